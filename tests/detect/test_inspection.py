"""An inspection (a job's profile and quality gate) rides on the fit sample's read."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask.callbacks import Callback
from distributed import Client

import adp
from adp.detect.inspection import Inspection
from adp.errors import DataError
from adp.io.profile import profile, profile_from, summarise_partition

FILES = 4
ROWS = 300


class Reads(Callback):
    """Counts the source-reading tasks the local scheduler runs."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def _pretask(self, key: object, dsk: object, state: object) -> None:
        name = key[0] if isinstance(key, tuple) else key
        if str(name).startswith("read"):
            self.count += 1


def _frames(nan_at: tuple[int, int] | None = None) -> list[pd.DataFrame]:
    frames = []
    for i in range(FILES):
        rng = np.random.default_rng(i)
        frame = pd.DataFrame(rng.normal(size=(ROWS, 3)), columns=["a", "b", "c"])
        frame["kind"] = "x"
        frames.append(frame)
    if nan_at is not None:
        frames[nan_at[0]].loc[nan_at[1], "b"] = np.nan
    return frames


def _lake(folder: Path, fmt: str, nan_at: tuple[int, int] | None = None) -> dd.DataFrame:
    for i, frame in enumerate(_frames(nan_at)):
        if fmt == "parquet":
            frame.to_parquet(folder / f"part.{i}.parquet", index=False)
        else:
            frame.to_csv(folder / f"part.{i}.csv", index=False)
    if fmt == "parquet":
        return dd.read_parquet(str(folder / "*.parquet"))
    return dd.read_csv(str(folder / "*.csv"))


class Recorder:
    def __init__(self, refuse: bool = False) -> None:
        self.summaries: list[dict] | None = None
        self.refuse = refuse

    def __call__(self, summaries: list[dict]) -> None:
        self.summaries = summaries
        if self.refuse:
            raise PermissionError("the gate refused")


def _detector() -> adp.BaseDetector:
    return adp.create_detector("hbos", contamination=0.05)


def _same_model(a: adp.BaseDetector, b: adp.BaseDetector, ddf: dd.DataFrame) -> None:
    assert (a.n_samples_fit_, a.n_rows_seen_) == (b.n_samples_fit_, b.n_rows_seen_)
    left = a.decision_function(ddf).compute().to_numpy()
    right = b.decision_function(ddf).compute().to_numpy()
    np.testing.assert_array_equal(left, right)


@pytest.mark.parametrize(("fmt", "reads"), [("parquet", 1), ("csv", 2)])
def test_the_profile_costs_no_read_of_its_own(tmp_path: Path, fmt: str, reads: int) -> None:
    ddf = _lake(tmp_path, fmt)
    features = ["a", "b", "c"]
    with dask.config.set(scheduler="threads"):
        with Reads() as apart:
            profile(ddf)
            _detector().fit(ddf, features, sample_rows=200, random_state=1)
        recorder = Recorder()
        with Reads() as together:
            inspected = _detector().fit(
                ddf,
                features,
                sample_rows=200,
                random_state=1,
                inspect=Inspection(summarise_partition, recorder),
            )
        plain = _detector().fit(ddf, features, sample_rows=200, random_state=1)
        assert together.count == reads * FILES
        assert apart.count == (reads + 1) * FILES  # the profile's own pass, before
        assert recorder.summaries is not None
        assert profile_from(ddf._meta, recorder.summaries).to_dict() == profile(ddf).to_dict()
        _same_model(inspected, plain, ddf)


def test_drop_counts_and_inspects_in_one_pass_and_fits_the_same_sample(tmp_path: Path) -> None:
    ddf = _lake(tmp_path, "parquet", nan_at=(2, 5))
    features = ["a", "b", "c"]
    with dask.config.set(scheduler="threads"):
        recorder = Recorder()
        with Reads() as reads:
            inspected = _detector().fit(
                ddf,
                features,
                sample_rows=200,
                random_state=3,
                missing="drop",
                inspect=Inspection(summarise_partition, recorder),
            )
        plain = _detector().fit(ddf, features, sample_rows=200, random_state=3, missing="drop")
    assert reads.count == 2 * FILES
    assert inspected.n_rows_seen_ == FILES * ROWS - 1
    assert profile_from(ddf._meta, recorder.summaries or []).to_dict()["rows"] == FILES * ROWS
    _same_model(inspected, plain, ddf)


def test_fused_feature_partitions_keep_the_sample_of_a_fit_without_inspection(
    tmp_path: Path,
) -> None:
    ddf = _lake(tmp_path, "parquet")
    # dask fuses files when one column of four is read
    assert ddf[["a"]].map_partitions(len).optimize().npartitions < FILES
    recorder = Recorder()
    with dask.config.set(scheduler="threads"):
        inspected = _detector().fit(
            ddf,
            ["a"],
            sample_rows=150,
            random_state=2,
            inspect=Inspection(summarise_partition, recorder),
        )
        plain = _detector().fit(ddf, ["a"], sample_rows=150, random_state=2)
    assert recorder.summaries is not None and len(recorder.summaries) == FILES
    _same_model(inspected, plain, ddf)


def test_the_gate_speaks_before_a_missing_value_stops_the_fit(tmp_path: Path) -> None:
    ddf = _lake(tmp_path, "parquet", nan_at=(1, 7))
    with dask.config.set(scheduler="threads"):
        with pytest.raises(PermissionError, match="the gate refused"):
            _detector().fit(ddf, inspect=Inspection(summarise_partition, Recorder(refuse=True)))
        recorder = Recorder()
        with pytest.raises(DataError, match=r"partition 1: .*'b': 1"):
            _detector().fit(ddf, inspect=Inspection(summarise_partition, recorder))
    assert recorder.summaries is not None and len(recorder.summaries) == FILES


def test_a_refusal_fits_nothing(tmp_path: Path) -> None:
    ddf = _lake(tmp_path, "csv")
    detector = _detector()
    with dask.config.set(scheduler="threads"), pytest.raises(PermissionError):
        detector.fit(ddf, inspect=Inspection(summarise_partition, Recorder(refuse=True)))
    assert not detector.is_fitted


def test_with_a_context_the_inspection_comes_first_in_its_own_pass(
    tmp_path: Path, client: Client
) -> None:
    frames = []
    for i in range(FILES):
        rng = np.random.default_rng(i)
        frames.append(
            pd.DataFrame(
                {
                    "sensor": np.repeat([f"s{i}", f"t{i}"], 48),
                    "ts": np.tile(pd.date_range("2026-01-01", periods=48, freq="h"), 2),
                    "value": rng.normal(size=96),
                }
            )
        )
    pd.concat(frames).to_parquet(tmp_path / "fleet.parquet", index=False)
    ddf = dd.read_parquet(str(tmp_path / "fleet.parquet")).repartition(npartitions=3)
    recorder = Recorder()
    detector = adp.create_detector(
        "hbos", context={"by": "sensor", "time": "ts", "season": {"period": "1d"}}
    )
    detector.fit(ddf, ["value"], inspect=Inspection(summarise_partition, recorder))
    assert recorder.summaries is not None
    assert sum(s["rows"] for s in recorder.summaries) == FILES * 96
    assert detector.is_fitted
