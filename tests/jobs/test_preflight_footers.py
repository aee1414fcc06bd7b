"""Pre-flight reads the footers of every Parquet file (the first 256, in threads), not only
the first: a file whose schema differs, or whose footer is corrupt, is named before any
cluster starts, with the file it differs from."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adp.errors import DataError, SourceError
from adp.io.footers import PREFLIGHT_FOOTERS, read_footers_in_threads
from adp.jobs.preflight import preflight
from adp.jobs.source_check import source_columns
from adp.jobs.spec import JobSpec, SourceSpec


def _frame(rows: int = 50, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["a", "b", "c"])
    frame["id"] = np.arange(rows) + rows * seed
    return frame


def _lake(folder: Path, files: int = 4) -> list[Path]:
    folder.mkdir(parents=True)
    paths = [folder / f"part-{i:03d}.parquet" for i in range(files)]
    for i, path in enumerate(paths):
        _frame(seed=i).to_parquet(path, index=False)
    return paths


def _spec(source: str, output: str, **source_extra: object) -> JobSpec:
    return JobSpec.from_dict(
        {
            "name": "footers",
            "source": {"uri": source, "key": ["id"], "features": ["a", "b", "c"], **source_extra},
            "detector": {"name": "hbos"},
            "output": {"uri": output},
            "profile": False,
        }
    )


def test_the_third_file_lacking_a_feature_column_is_named_with_the_first(tmp_path) -> None:
    parts = _lake(tmp_path / "lake")
    _frame(seed=2).drop(columns=["c"]).to_parquet(parts[2], index=False)
    spec = _spec(str(tmp_path / "lake"), str(tmp_path / "scores"))
    with pytest.raises(DataError) as info:
        preflight(spec)
    message = str(info.value)
    assert "schema drift" in message and "lacks columns ['c']" in message, message
    assert str(parts[2]) in message and str(parts[0]) in message and "\n" not in message
    assert str(parts[1]) not in message and str(parts[3]) not in message


def test_a_changed_column_type_is_named(tmp_path) -> None:
    parts = _lake(tmp_path / "lake")
    _frame(seed=2).astype({"b": "int64"}).to_parquet(parts[2], index=False)
    with pytest.raises(DataError, match=r"changes types b: double -> int64") as info:
        source_columns(SourceSpec(uri=str(tmp_path / "lake")))
    assert str(parts[2]) in str(info.value) and str(parts[0]) in str(info.value)


def test_drift_outside_the_columns_read_is_no_drift(tmp_path) -> None:
    parts = _lake(tmp_path / "lake")
    _frame(seed=2).assign(extra=1.0).to_parquet(parts[2], index=False)
    with pytest.raises(DataError, match=r"has extra columns \['extra'\]"):
        source_columns(SourceSpec(uri=str(tmp_path / "lake")))
    only = SourceSpec(uri=str(tmp_path / "lake"), columns=["a", "b", "c", "id"])
    assert source_columns(only) == ["a", "b", "c", "id"]


def test_a_corrupt_footer_in_the_third_file_is_named(tmp_path) -> None:
    parts = _lake(tmp_path / "lake")
    parts[2].write_bytes(parts[2].read_bytes()[:-40])  # the footer cut off
    with pytest.raises(DataError, match="is corrupt or truncated") as info:
        source_columns(SourceSpec(uri=str(tmp_path / "lake")))
    assert repr(str(parts[2])) in str(info.value)


def test_agreeing_footers_are_a_line_of_the_checks(tmp_path) -> None:
    _lake(tmp_path / "lake")
    done = preflight(_spec(str(tmp_path / "lake"), str(tmp_path / "scores")))
    assert "the footers of all 4 Parquet files agree" in done.checks


def test_validate_false_skips_the_footers_as_the_job_does(tmp_path) -> None:
    parts = _lake(tmp_path / "lake")
    _frame(seed=2).drop(columns=["c"]).to_parquet(parts[2], index=False)
    source = SourceSpec(uri=str(tmp_path / "lake"), options={"validate": False})
    assert source_columns(source) == ["a", "b", "c", "id"]


def test_at_most_the_first_256_footers_are_read_and_the_note_says_so(tmp_path) -> None:
    folder = tmp_path / "lake"
    folder.mkdir()
    table = _frame(rows=5)
    for i in range(PREFLIGHT_FOOTERS + 4):
        table.to_parquet(folder / f"part-{i:04d}.parquet", index=False)
    table.drop(columns=["c"]).to_parquet(folder / f"part-{PREFLIGHT_FOOTERS + 2:04d}.parquet")
    notes: list[str] = []
    started = time.perf_counter()
    assert source_columns(SourceSpec(uri=str(folder)), notes) == ["a", "b", "c", "id"]
    assert time.perf_counter() - started < 3  # local disks stay fast
    assert notes == [
        f"the footers of the first {PREFLIGHT_FOOTERS} of {PREFLIGHT_FOOTERS + 4} Parquet "
        "files agree (the job checks the others' when it reads them)"
    ]


def test_footers_in_threads_keep_the_order_and_blame_the_store_not_the_file(tmp_path) -> None:
    import fsspec

    parts = _lake(tmp_path / "lake", files=6)
    parts[4].write_bytes(b"not parquet")
    fs = fsspec.filesystem("file")
    footers = read_footers_in_threads(fs, [str(p) for p in parts], threads=3)
    assert [f.path for f in footers] == [str(p) for p in parts]
    assert [f.error is not None for f in footers] == [False] * 4 + [True, False]
    assert footers[0].rows == 50 and footers[0].columns["a"] == "double"

    class Unreachable:
        def open(self, path: str, mode: str) -> object:
            raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(SourceError, match="endpoint is unreachable") as info:
        read_footers_in_threads(Unreachable(), ["lake/p1.parquet", "lake/p2.parquet"])  # type: ignore[arg-type]
    assert "corrupt" not in str(info.value)
