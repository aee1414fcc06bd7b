"""The guard on user data: an output that is, holds or lies inside a source is refused before
any work, whatever the mode, and so are `.`, the current directory, a home directory, a
root and a whole bucket; the job's source is left untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from adp.errors import ConfigError
from adp.io.guard import SourceRef, check_output_against_sources, check_output_location
from adp.io.sinks import sink_for


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    folder = tmp_path / "lake"
    folder.mkdir()
    pd.DataFrame({"x": [1.0, 2.0, 3.0]}).to_parquet(folder / "a.parquet")
    return folder


@pytest.mark.parametrize(
    ("output", "relation"),
    [
        ("{lake}", "is the source"),
        ("file://{lake}", "is the source"),
        ("{lake}/", "is the source"),
        ("{lake}/sub/../", "is the source"),
        ("{lake}/scores", "lies inside the source"),
        ("{lake}/a/b/c", "lies inside the source"),
        ("{tmp}", "contains the source"),
    ],
)
def test_local_output_overlapping_the_source_is_refused(lake, tmp_path, output, relation):
    uri = output.format(lake=lake, tmp=tmp_path)
    for mode in ("error", "overwrite"):
        with pytest.raises(ConfigError) as err:
            sink_for(uri, mode=mode, sources=[str(lake)]).check()
        message = str(err.value)
        assert relation in message and str(lake) in message
        assert "write the output to a folder outside the source" in message
        assert "\n" not in message
    assert sorted(p.name for p in lake.iterdir()) == ["a.parquet"]


def test_symlinks_relative_paths_and_globs_are_resolved(lake, tmp_path, monkeypatch):
    link = tmp_path / "link"
    link.symlink_to(lake)
    with pytest.raises(ConfigError, match="is the source"):
        check_output_against_sources(str(link), [str(lake)])
    with pytest.raises(ConfigError, match="lies inside the source"):
        check_output_against_sources(str(link / "out"), [f"file://{lake}"])
    with pytest.raises(ConfigError, match="contains the source"):
        check_output_against_sources(str(tmp_path / "x" / ".."), [str(lake / "a.parquet")])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="lies inside"):
        check_output_against_sources("lake/out", [str(lake / "*.parquet")])
    # a sibling whose name starts with the source's is not inside it
    check_output_against_sources(str(tmp_path / "lake2"), [str(lake)])
    check_output_against_sources(str(tmp_path / "scores"), [str(lake)])


def test_dot_cwd_home_and_root_are_refused_whatever_the_mode(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = {
        ".": "the current directory",
        str(tmp_path): "the current directory",
        "./": "the current directory",
        "~": "a home directory",
        os.path.expanduser("~"): "a home directory",
        "/": "a file-system root",
        "file:///": "a file-system root",
    }
    for uri, what in cases.items():
        for mode in ("error", "overwrite"):
            with pytest.raises(ConfigError, match=what) as err:
                sink_for(uri, mode=mode, sources=[]).check()
            assert "name a new folder" in str(err.value)
    check_output_location("scores")  # a new folder in the current directory is fine


def test_object_store_outputs_by_bucket_and_prefix():
    src = "s3://lake/metrics/2026/"
    for output, relation in [
        ("s3://lake/metrics/2026", "is the source"),
        ("s3a://lake/metrics/2026/", "is the source"),
        ("s3://lake/metrics/2026/scores", "lies inside"),
        ("s3://lake/metrics", "contains the source"),
    ]:
        with pytest.raises(ConfigError, match=relation):
            check_output_against_sources(output, [src])
    check_output_against_sources("s3://lake/metrics/2026-scores", [src])
    check_output_against_sources("s3://other/metrics/2026", [src])
    check_output_against_sources("/metrics/2026", [src])  # local is another store
    with pytest.raises(ConfigError, match="lies inside"):
        check_output_against_sources("s3://lake/in/out", ["s3://lake/in/*.parquet"])
    with pytest.raises(ConfigError, match="a whole bucket"):
        check_output_against_sources("s3://lake/", [])
    # the same bucket name on two different endpoints is two buckets
    a = {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}
    b = SourceRef(src, storage_options={"client_kwargs": {"endpoint_url": "http://10.0.0.2"}})
    check_output_against_sources(src, [b], storage_options=a)


def test_database_outputs_by_database_and_table(tmp_path, pg_url):
    db = tmp_path / "m.db"
    sqlite = f"sqlite:///{db}"
    spelled = f"sqlite:///{tmp_path}/./m.db"
    with pytest.raises(ConfigError, match="is the source") as err:
        check_output_against_sources(spelled, [SourceRef(sqlite, table="metrics")], table="metrics")
    assert "another table" in str(err.value)
    check_output_against_sources(sqlite, [SourceRef(sqlite, table="metrics")], table="scores")
    other = f"sqlite:///{tmp_path / 'other.db'}"
    check_output_against_sources(other, [SourceRef(sqlite, table="metrics")], table="metrics")
    query = SourceRef(sqlite, query="SELECT * FROM Metrics WHERE x > 0")
    with pytest.raises(ConfigError, match="is the source"):
        check_output_against_sources(sqlite, [query], table="metrics")
    check_output_against_sources(sqlite, [query], table="metric")
    # 127.0.0.1 and localhost, with and without the default port, are one server
    secret = "postgresql+psycopg://postgres:s3cret@localhost:5432/test"
    with pytest.raises(ConfigError) as err:
        sink_for(secret, table="metrics", sources=[SourceRef(pg_url, table="metrics")]).check()
    assert "s3cret" not in str(err.value) and "***" in str(err.value)
    check_output_against_sources(
        "postgresql+psycopg://postgres@127.0.0.1/other", [SourceRef(pg_url, table="m")], table="m"
    )


def test_a_source_spec_is_accepted_as_a_source(tmp_path):
    from adp.jobs.spec import SourceSpec

    spec = SourceSpec(uri=f"sqlite:///{tmp_path / 'm.db'}", options={"table": "metrics"})
    with pytest.raises(ConfigError, match="is the source"):
        check_output_against_sources(spec.uri, [spec], table="metrics")


@pytest.mark.slow
def test_adp_run_refuses_output_equal_to_source_in_one_line(lake, tmp_path):
    before = {p.name: p.read_bytes() for p in lake.iterdir()}
    spec = {
        "name": "guarded",
        "source": {"uri": str(lake)},
        "detector": {"name": "hbos"},
        "output": {"uri": str(lake), "mode": "overwrite"},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    done = subprocess.run(
        [sys.executable, "-m", "adp.cli", "run", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "is the source" in lines[0], done.stderr
    assert {p.name: p.read_bytes() for p in lake.iterdir()} == before
