"""``adp bench outofcore`` on a tiny lake (two row counts, each on a fresh 2-process
cluster), and the job runner's bounded-memory threshold stage it measures."""

from __future__ import annotations

import json
import time

import dask
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from adp.bench.outofcore import RssSampler, outofcore
from adp.detect.threshold import AutoThreshold, Contamination, FixedScore
from adp.io.parts import WrittenPart, group_files, staged_scores


@pytest.mark.slow
def test_outofcore_bench_measures_each_row_count(tmp_path) -> None:
    result = CliRunner().invoke(
        outofcore,
        [
            "--rows",
            "100000,200000",
            "--features",
            "4",
            "--detector",
            "pca",
            "--sample-rows",
            "5000",
            "--workers",
            "2",
            "--memory-limit",
            "1GiB",
            "--data-dir",
            str(tmp_path),
            "--no-warm",
            "--json",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["workers"] == 2 and report["cluster_memory_bytes"] == 2 * 2**30
    runs = report["runs"]
    assert [r["rows"] for r in runs] == [100_000, 200_000]
    for run in runs:
        assert run["seconds"] > 0 and run["rows_per_second"] > 0
        assert run["seconds_per_million_rows"] > 0
        assert run["rows"] // 100 <= run["anomalies"] < run["rows"] // 50  # 1%, up to ties
        assert set(run["peak_rss_bytes"]) == {"worker-0", "worker-1", "client"}
        assert all(v > 0 for v in run["peak_rss_bytes"].values())
        assert run["client_rss_growth_bytes"] >= 0
        assert set(run["spilled_bytes"]) == {"worker-0", "worker-1"}
        assert all(v >= 0 for v in run["spilled_bytes"].values())
        assert {"fit", "score", "threshold", "flag"} <= set(run["stage_seconds"])
        assert run["lake_bytes"] > 0
    assert report["lake_bytes"] == {str(r["rows"]): r["lake_bytes"] for r in runs}
    assert report["seconds_per_million_rows_ratio"] > 0
    # The lakes are kept for reuse; the job's scratch output is gone.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["100000x4", "200000x4"]


def test_rss_sampler_reports_growth() -> None:
    with RssSampler(interval=0.01) as sampler:
        block = bytearray(64 * 2**20)
        block[::4096] = b"x" * len(block[::4096])  # touch every page
        time.sleep(0.1)
    del block
    assert sampler.start_bytes > 0
    assert sampler.growth_bytes >= 32 * 2**20


@pytest.mark.slow
def test_job_threshold_reads_staged_scores_in_groups(client, tmp_path) -> None:
    rng = np.random.default_rng(0)
    parts = []
    for i, rows in enumerate([300, 200, 500, 0, 400]):
        path = tmp_path / f"part.{i:05d}.parquet"
        frame = pd.DataFrame({"score": rng.normal(size=rows)}, index=np.arange(rows) + 7)
        frame.to_parquet(path)
        parts.append(WrittenPart(str(path), rows, path.stat().st_size))
    groups = group_files(parts, 450)
    assert [len(g) for g in groups] == [2, 1, 2]  # 500, 500, 400 rows
    assert [p for g in groups for p in g] == [p.path for p in parts]
    scores = staged_scores(parts, rows=450)
    assert scores.npartitions == 3

    def step(pending: object) -> object:  # one pass on the cluster, as the job runs it
        return client.compute(pending).result()

    def by_passes(rule: object) -> float:
        return float(step(rule.resolve(scores, step=step)))  # type: ignore[attr-defined]

    everything = np.concatenate([pd.read_parquet(p.path)["score"].to_numpy() for p in parts])
    for rule in (Contamination(0.05), AutoThreshold("mad"), AutoThreshold("iqr"), FixedScore(1.5)):
        (together,) = dask.compute(rule.resolve(scores), scheduler="sync")
        assert by_passes(rule) == together
    k = int(np.ceil(0.05 * everything.size))
    assert by_passes(Contamination(0.05)) == np.sort(everything)[-k]
