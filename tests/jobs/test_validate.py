"""``adp validate JOB.yaml``: every mistake that needs no cluster is one named error and exit
1, before any cluster starts; a good spec is valid in well under a second of checks."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from adp.jobs.cli import validate
from adp.jobs.spec import JobSpec

ADP = [sys.executable, "-m", "adp.cli"]


@pytest.fixture
def no_cluster(monkeypatch) -> None:
    """Starting a cluster or a client fails the test."""
    import distributed

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a cluster or client was started")

    monkeypatch.setattr(distributed.LocalCluster, "__init__", refuse)
    monkeypatch.setattr(distributed.Client, "__init__", refuse)


@pytest.fixture
def lake(tmp_path) -> Path:
    folder = tmp_path / "lake"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        frame = pd.DataFrame(rng.normal(size=(100, 3)), columns=["a", "b", "c"])
        frame["id"] = np.arange(i * 100, (i + 1) * 100)
        frame["label"] = 0
        frame["site"] = "x"
        frame.to_parquet(folder / f"part{i}.parquet", index=False)
    return folder


def _good(lake: Path, tmp_path: Path) -> dict[str, Any]:
    return {
        "name": "v",
        "source": {"uri": str(lake), "key": ["id"], "exclude": ["label"]},
        "detector": {"name": "iforest", "params": {"n_estimators": 10}},
        "fit": {"sample_rows": 100},
        "evaluate": {"label": "label"},
        "output": {"uri": str(tmp_path / "out" / "scores")},
        "report": {"time": "id", "group": "site"},
    }


def _validate(tmp_path: Path, spec: dict[str, Any] | str) -> Any:
    job = tmp_path / "job.yaml"
    job.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
    return CliRunner().invoke(validate, [str(job)])


def _set(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    node = spec
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return spec


def test_a_good_spec_is_valid_without_a_cluster(no_cluster, lake, tmp_path) -> None:
    result = _validate(tmp_path, _good(lake, tmp_path))
    assert result.exit_code == 0, result.output
    assert "valid" in result.output and "no cluster started" in result.output
    assert "6 columns" in result.output


BAD = [
    ("detector.name", "iforestt", "unknown detector 'iforestt'"),
    ("detector.params", {"n_trees": 5}, "n_trees"),
    ("source.features", ["a", "nope"], "source.features names ['nope']"),
    ("source.features", ["a", "a"], "features names columns more than once: ['a']"),
    ("source.features", ["a", "site"], "non-numeric columns ['site']"),
    ("source.key", ["ident"], "source.key names ['ident']"),
    ("source.exclude", ["lable"], "source.exclude names ['lable']"),
    ("evaluate.label", "truth", "evaluate.label names ['truth']"),
    ("report.group", "sensor", "report.group names ['sensor']"),
    ("fit.sample_rows", True, "fit.sample_rows: Input should be a valid integer, got True"),
    ("fit.sample_rows", 1, "fit.sample_rows is 1"),
    ("threshold.score", float("nan"), "threshold.score: Input should be a finite number"),
    ("threshold.score", float("inf"), "threshold.score: Input should be a finite number"),
    ("profile", "yes", "profile: Input should be a valid boolean"),
]


@pytest.mark.parametrize(("field", "value", "expected"), BAD, ids=[f for f, _, _ in BAD])
def test_each_bad_field_is_one_named_error(
    no_cluster, lake, tmp_path, field, value, expected
) -> None:
    result = _validate(tmp_path, _set(_good(lake, tmp_path), field, value))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert expected in lines[0]


def test_neighbour_methods_need_more_rows_than_neighbours(no_cluster, lake, tmp_path) -> None:
    spec = _good(lake, tmp_path)
    spec["detector"] = {"name": "lof", "params": {"n_neighbors": 30}}
    spec["fit"] = {"sample_rows": 30}
    result = _validate(tmp_path, spec)
    assert result.exit_code == 1 and "needs at least 31 rows" in result.output
    spec["detector"] = {"name": "lof"}  # PyOD's default n_neighbors is 20
    spec["fit"] = {"sample_rows": 10}
    assert "needs at least 21 rows" in _validate(tmp_path, spec).output


def test_missing_source_and_missing_table(no_cluster, lake, tmp_path) -> None:
    spec = _good(lake, tmp_path)
    spec["source"]["uri"] = str(tmp_path / "nowhere")
    result = _validate(tmp_path, spec)
    assert result.exit_code == 1 and "nowhere' does not exist" in result.output
    db = tmp_path / "m.db"
    pd.DataFrame({"id": [1, 2], "a": [0.1, 0.2]}).to_sql("m", f"sqlite:///{db}", index=False)
    spec["source"] = {"uri": f"sqlite:///{db}", "options": {"table": "metrics"}}
    spec.pop("evaluate")
    spec.pop("report")
    result = _validate(tmp_path, spec)
    assert result.exit_code == 1 and "table 'metrics' is not in the database" in result.output
    assert "['m']" in result.output


def test_output_and_report_locations(no_cluster, lake, tmp_path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    spec = _good(lake, tmp_path)
    spec["output"]["uri"] = str(blocker / "scores")
    result = _validate(tmp_path, spec)
    assert result.exit_code == 1 and "'afile' is a file, not a folder" in result.output.replace(
        str(tmp_path) + "/", ""
    )
    spec["output"]["uri"] = str(blocker)
    assert "is a file, not a folder" in _validate(tmp_path, spec).output
    spec = _good(lake, tmp_path)
    spec["report"]["path"] = str(tmp_path)
    result = _validate(tmp_path, spec)
    assert result.exit_code == 1 and "is a folder: name a file" in result.output
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    spec["report"]["path"] = str(locked / "r.html")
    result = _validate(tmp_path, spec)
    if result.exit_code == 0:  # root may write anywhere
        import os

        assert os.geteuid() == 0
    else:
        assert "is not writable" in result.output


def test_csv_header_duplicates_are_refused(no_cluster, tmp_path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,a,c,c\n1,2,3,4,5\n")
    spec = {
        "source": {"uri": str(csv)},
        "detector": {"name": "hbos"},
        "output": {"uri": str(tmp_path / "o")},
    }
    result = _validate(tmp_path, spec)
    assert result.exit_code == 1
    assert f"CSV file '{csv}' has duplicate column names in its header: ['a', 'c']" in (
        result.output
    )


def test_a_million_missing_features_print_one_short_line(no_cluster, lake, tmp_path) -> None:
    spec = JobSpec.from_dict(
        _set(_good(lake, tmp_path), "source.features", [f"f{i}" for i in range(200_000)])
    )
    from adp.jobs.preflight import check_columns

    with pytest.raises(Exception) as info:
        check_columns(spec, ["a", "b"])
    assert "... and 199990 more" in str(info.value)
    assert len(str(info.value)) < 400


def test_missing_output_bucket_is_refused_not_created(no_cluster, lake, tmp_path, s3) -> None:
    spec = _good(lake, tmp_path)
    spec.pop("report")
    spec["output"] = {"uri": "s3://no-such-bucket-adp/scores/", "storage_options": s3.options()}
    result = _validate(tmp_path, spec)
    assert result.exit_code == 1
    assert "the output bucket 'no-such-bucket-adp' does not exist" in result.output
    assert s3.endpoint in result.output
    assert not s3.fs().exists("no-such-bucket-adp")


def test_relative_paths_are_resolved_against_the_working_directory(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    spec = JobSpec.from_dict(
        {
            "source": {"uri": "data/lake/"},
            "detector": {"name": "hbos"},
            "output": {"uri": "sqlite:///out/scores.db", "table": "t"},
            "report": {"path": "r.html"},
        }
    )
    assert spec.source.uri == f"{tmp_path}/data/lake/"
    assert spec.output is not None and spec.output.uri == f"sqlite:///{tmp_path}/out/scores.db"
    assert spec.report is not None and spec.report.path == f"{tmp_path}/r.html"
    remote = JobSpec.from_dict(
        {"source": {"uri": "s3://b/k"}, "detector": {"name": "hbos"}, "output": {"uri": "/abs"}}
    )
    assert remote.source.uri == "s3://b/k"


def test_adp_validate_in_a_subprocess_starts_no_cluster(lake, tmp_path) -> None:
    spec = _set(_good(lake, tmp_path), "evaluate.label", "truth")
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(spec))
    started = time.perf_counter()
    proc = subprocess.run([*ADP, "validate", str(job)], capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - started
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: evaluate.label names ['truth'], not in the source '{lake}'; its columns are "
        "['a', 'b', 'c', 'id', 'label', 'site']"
    ]
    assert "distributed" not in proc.stderr and "Traceback" not in proc.stderr
    assert elapsed < 10, elapsed  # interpreter and imports included; no cluster
