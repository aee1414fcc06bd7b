"""The sink protocol: a folder (Parquet dataset) and a SQLite table, staged then committed."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from adp.errors import ConfigError, OutputExistsError
from adp.io.parts import WrittenPart, group_files, read_staged_scores
from adp.io.sinks import (
    MANIFEST,
    FolderSink,
    TableSink,
    manifest_for,
    sink_for,
    table_manifest,
)

KEY = ["sensor", "seq"]


def _raw(rows: int = 600, npartitions: int = 4, seed: int = 0) -> dd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "sensor": np.repeat(["a", "b", "c"], rows // 3),
            "seq": np.tile(np.arange(rows // 3), 3),
            "truth": rng.random(rows) < 0.05,
            "score": rng.normal(size=rows),
        }
    )
    return dd.from_pandas(frame, npartitions=npartitions)


def _flag(part: pd.DataFrame, threshold: float) -> pd.DataFrame:
    return part.assign(is_anomaly=part["score"].to_numpy() >= threshold)


def _count_truth(part: pd.DataFrame) -> int:
    return int(part["truth"].sum())


class Recorder:
    """A ``compute`` that records what it was asked to compute."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, tasks, what):
        self.calls.append((what, len(tasks)))
        return list(dask.compute(*tasks, scheduler="sync"))


def _run(sink, raw: dd.DataFrame, *, fail_before_commit: bool = False) -> list[WrittenPart]:
    """Stage, threshold at the 95th percentile, flag, write and commit through ``sink``."""
    compute = Recorder()
    with sink.session(compute=compute, step=lambda d: dask.compute(d, scheduler="sync")[0]):
        assert sink.step is not None
        staged = sink.stage(raw)
        assert compute.calls == [("score", raw.npartitions)]
        assert staged.npartitions == raw.npartitions
        scores = sink.staged_scores(staged).compute(scheduler="sync")
        threshold = float(np.quantile(scores, 0.95))
        flagged = staged.map_partitions(_flag, threshold)
        tasks = sink.write(flagged, inspect=_count_truth, drop=["truth"])
        results = dask.compute(*tasks, scheduler="sync")
        parts = [written for written, _ in results]
        assert sum(seen for _, seen in results) == int(raw["truth"].sum().compute())
        if fail_before_commit:
            raise RuntimeError("the job failed before its commit")
        sink.commit(parts, manifest_for(parts, job="sink-test", threshold=threshold))
    assert sink.step is None  # the session is closed
    return parts


def test_folder_sink_stages_writes_and_commits_with_its_manifest(tmp_path) -> None:
    raw = _raw()
    out = tmp_path / "out" / "scores"
    sink = sink_for(str(out))
    assert isinstance(sink, FolderSink)
    sink.check()
    parts = _run(sink, raw)
    written = pd.read_parquet(out)
    assert len(written) == 600 and not written.duplicated(KEY).any()
    assert set(written.columns) == {"sensor", "seq", "score", "is_anomaly"}  # truth dropped
    pd.testing.assert_series_equal(
        written["score"].sort_index(), raw["score"].compute().sort_index()
    )
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["rows"] == 600 and manifest["job"] == "sink-test"
    assert [f["path"] for f in manifest["files"]] == [f"part.{i:05d}.parquet" for i in range(4)]
    assert manifest["files"][0]["anomalies"] == parts[0].anomalies
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scores"]  # no staging


def test_folder_sink_check_refuses_existing_data_unless_overwrite(tmp_path) -> None:
    out = tmp_path / "scores"
    _run(FolderSink(str(out)), _raw())  # an ADP output: overwrite may replace it
    with pytest.raises(OutputExistsError, match="output.mode: overwrite"):
        FolderSink(str(out)).check()
    FolderSink(str(out), "overwrite").check()
    with pytest.raises(ConfigError, match="upsert"):
        FolderSink(str(out), "upsert")


def test_overwrite_refuses_a_folder_holding_files_adp_did_not_write(tmp_path) -> None:
    out = tmp_path / "scores"
    _run(FolderSink(str(out)), _raw())
    (out / "precious.parquet").write_bytes(b"keep me")
    (out / "notes.txt").write_text("mine")
    for mode in ("error", "overwrite"):
        with pytest.raises(OutputExistsError) as err:
            FolderSink(str(out), mode).check()
    assert "2 files that no ADP manifest lists" in str(err.value)
    assert "'notes.txt'" in str(err.value)
    sink = FolderSink(str(out), "overwrite")
    with pytest.raises(OutputExistsError, match="no ADP manifest"):
        _run(sink, _raw(seed=1))  # refused at the commit too, whatever the check said
    assert (out / "precious.parquet").read_bytes() == b"keep me"
    assert len(pd.read_parquet(out / "part.00000.parquet")) == 150  # the old output is whole


def test_folder_sink_failure_before_commit_leaves_the_output_as_it_was(tmp_path) -> None:
    out = tmp_path / "scores"
    out.mkdir()
    (out / "old.parquet").write_bytes(b"old")
    with pytest.raises(RuntimeError, match="before its commit"):
        _run(FolderSink(str(out), "overwrite"), _raw(), fail_before_commit=True)
    assert [p.name for p in out.iterdir()] == ["old.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores"]  # staging removed


def test_staged_scores_are_regrouped_and_read_again(tmp_path) -> None:
    raw = _raw(npartitions=6)
    sink = FolderSink(str(tmp_path / "scores"))
    with sink.session(compute=Recorder()):
        staged = sink.stage(raw)
        with dask.config.set({"scheduler": "sync"}):
            scores = sink.staged_scores(staged)
            assert scores.npartitions == 1  # 600 scores fit one threshold group
            np.testing.assert_array_equal(
                np.sort(scores.compute().to_numpy()), np.sort(raw["score"].compute().to_numpy())
            )
            other = staged[staged["score"] > 0]  # not the staged frame: its own score column
            assert sink.staged_scores(other).npartitions == 6
    with pytest.raises(ConfigError, match="no open session"):
        sink.stage(raw)


def test_group_files_keeps_order_and_bounds_rows(tmp_path) -> None:
    parts = []
    for i, rows in enumerate([300, 200, 500, 0, 400]):
        path = tmp_path / f"part.{i:05d}.parquet"
        pd.DataFrame({"score": np.arange(rows, dtype=float)}).to_parquet(path)
        parts.append(WrittenPart(str(path), rows, path.stat().st_size))
    groups = group_files(parts, 450)
    assert [len(g) for g in groups] == [2, 1, 2]  # 500, 500, 400 rows
    assert [p for g in groups for p in g] == [p.path for p in parts]
    assert len(read_staged_scores(groups[0])) == 500
    assert len(read_staged_scores([])) == 0


def _table_rows(url: str, table: str) -> pd.DataFrame:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return pd.read_sql_table(table, conn)
    finally:
        engine.dispose()


def test_table_sink_commits_rows_and_manifest_and_refuses_an_existing_table(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'scores.db'}"
    staging = tmp_path / "staging"
    sink = sink_for(url, table="scores", key=KEY, staging_dir=staging)
    assert isinstance(sink, TableSink)
    sink.check()
    with dask.config.set({"scheduler": "sync"}):
        _run(sink, _raw())
    rows = _table_rows(url, "scores")
    assert len(rows) == 600 and not rows.duplicated(KEY).any()
    assert "truth" not in rows.columns
    manifest = table_manifest(url, "scores")
    assert manifest is not None
    assert manifest["rows"] == 600 and manifest["table"] == "scores"
    assert manifest["job"] == "sink-test"
    assert table_manifest(url, "elsewhere") is None
    assert list(staging.iterdir()) == []  # the local staging folder is gone

    with pytest.raises(OutputExistsError, match="upsert"):
        TableSink(url, "scores", "error", key=KEY, staging_dir=staging).check()
    TableSink(url, "scores", "upsert", key=KEY, staging_dir=staging).check()
    with pytest.raises(ConfigError, match="identifier"):
        TableSink(url, "scores; drop table x", key=KEY).check()


def test_table_sink_failure_before_commit_leaves_the_table_as_it_was(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'scores.db'}"
    staging = tmp_path / "staging"
    sink = TableSink(url, "scores", "overwrite", key=KEY, staging_dir=staging)
    with dask.config.set({"scheduler": "sync"}):
        _run(sink, _raw(seed=1))
        before = _table_rows(url, "scores")
        manifest = table_manifest(url, "scores")
        with pytest.raises(RuntimeError, match="before its commit"):
            _run(sink, _raw(seed=2), fail_before_commit=True)
    pd.testing.assert_frame_equal(_table_rows(url, "scores"), before)
    assert table_manifest(url, "scores") == manifest
    assert list(staging.iterdir()) == []
    inspector_tables = sa.inspect(sa.create_engine(url)).get_table_names()
    assert sorted(inspector_tables) == ["_adp_manifests", "scores"]  # no staging table


def test_sink_for_refuses_storage_options_for_a_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="storage_options"):
        sink_for(f"sqlite:///{tmp_path / 'x.db'}", table="t", storage_options={"anon": True})


def test_a_sink_is_a_score_stage_for_run_detection_without_a_cluster(tmp_path) -> None:
    """The folder sink as the stage of the one score path: same flags as in memory."""
    detection = pytest.importorskip("adp.detect.detection")
    import adp

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(400, 3)), columns=["a", "b", "c"])
    frame["id"] = np.arange(400)
    ddf = dd.from_pandas(frame, npartitions=4)
    with dask.config.set({"scheduler": "sync"}):
        det = adp.create_detector("hbos", contamination=0.05).fit(ddf, key=["id"])
        in_memory = detection.run_detection(det, ddf, key=["id"])
        expected = in_memory.frame.compute()
        sink = FolderSink(str(tmp_path / "scores"))
        step = functools.partial(_compute_one)
        with sink.session(compute=Recorder(), step=step):
            staged = detection.run_detection(det, ddf, key=["id"], stage=sink)
            got = staged.frame.compute()
    assert isinstance(staged.threshold, float)
    assert staged.threshold == pytest.approx(float(dask.compute(in_memory.threshold)[0]))
    pd.testing.assert_frame_equal(got, expected)


def _compute_one(value):
    return dask.compute(value, scheduler="sync")[0]
