"""Profiles in one parallel pass, and the missing-value policy at fit and score time."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import adp
from adp.errors import ConfigError, DataError
from adp.io.validate import apply_missing_policy


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "a": rng.normal(size=120),
            "b": rng.normal(size=120),
            "const": np.full(120, 3.0),
            "label": np.where(np.arange(120) % 3, "x", "y"),
        }
    )
    df.loc[[5, 70], "a"] = np.nan
    df.loc[[90], "b"] = np.inf
    return df


def test_profile_counts_nulls_non_finite_and_constants_in_one_pass(client):
    df = _frame()
    ddf = dd.from_pandas(df, npartitions=4)
    empty = ddf[ddf["a"] > 1e9]  # every partition empty
    prof = adp.profile(ddf)
    assert prof.rows == 120 and prof.partitions == 4 and prof.empty_partitions == []
    assert prof.column("a").nulls == 2 and prof.column("a").non_finite == 0
    assert prof.column("b").non_finite == 1 and prof.column("b").nulls == 0
    assert prof.constant_columns == ["const"]
    assert prof.dtypes["const"] == "float64"
    assert prof.column("a").min == pytest.approx(np.nanmin(df["a"]))
    as_dict = prof.to_dict()
    assert as_dict["rows"] == 120 and as_dict["constant_columns"] == ["const"]
    text = prof.render()
    assert "120 rows in 4 partitions" in text and "a (float64): 2 nulls" in text
    assert adp.profile(empty).empty_partitions == [0, 1, 2, 3]


def test_profile_reports_schema_differences_between_parquet_files(client, tmp_path):
    df = _frame()[["a", "b"]]
    folder = tmp_path / "drift"
    folder.mkdir()
    df.iloc[:60].to_parquet(folder / "p0.parquet", index=False)
    df.iloc[60:].assign(b=lambda d: d["b"].astype("float32"), extra=1).to_parquet(
        folder / "p1.parquet", index=False
    )
    ddf = adp.read(str(folder / "p0.parquet"))
    prof = adp.profile(ddf, source=str(folder))
    assert prof.files == 2
    assert len(prof.schema_differences) == 1
    line = prof.schema_differences[0]
    assert "p1.parquet" in line and "extra" in line and "b: double -> float" in line


def test_fail_policy_names_partition_column_and_count(client):
    ddf = dd.from_pandas(_frame(), npartitions=4)
    checked, medians = apply_missing_policy(ddf, ["a", "b"], "fail")
    assert medians is None
    # partitions 0 and 2 lack an 'a', partition 3 has an infinite 'b': whichever fails first
    with pytest.raises(DataError, match=r"partition [023]: .* columns \{'[ab]': 1\}"):
        checked.compute()
    ok, _ = apply_missing_policy(ddf, ["const"], "fail")
    assert len(ok.compute()) == 120


def test_drop_policy_leaves_out_rows_with_missing_features(client):
    ddf = dd.from_pandas(_frame(), npartitions=4)
    dropped, _ = apply_missing_policy(ddf, ["a", "b"], "drop")
    out = dropped.compute()
    assert len(out) == 117 and np.isfinite(out[["a", "b"]].to_numpy()).all()


def test_impute_median_is_computed_once_and_reused_at_score_time(client):
    df = _frame()
    ddf = dd.from_pandas(df, npartitions=4)
    filled, medians = apply_missing_policy(ddf, ["a", "b"], "impute_median")
    finite_a = df["a"][np.isfinite(df["a"])]
    assert medians["a"] == pytest.approx(finite_a.median(), abs=0.15)
    out = filled.compute()
    assert out.loc[5, "a"] == medians["a"] and out.loc[90, "b"] == medians["b"]
    assert out.loc[6, "a"] == df.loc[6, "a"]
    # score time: new data, the fit's medians
    later = dd.from_pandas(pd.DataFrame({"a": [np.nan, 1.0], "b": [2.0, np.nan]}), npartitions=1)
    again, used = apply_missing_policy(later, ["a", "b"], "impute_median", medians=medians)
    assert used == medians
    assert again.compute()["a"].iloc[0] == medians["a"]
    # a detector fitted and scored through the same policy scores every row
    det = adp.create_detector("hbos", contamination=0.1).fit(filled, features=["a", "b"])
    assert len(det.detect(again).compute()) == 2


def test_policy_errors_name_what_is_wrong(client):
    ddf = dd.from_pandas(_frame(), npartitions=2)
    with pytest.raises(ConfigError, match="'skip' is not one of"):
        apply_missing_policy(ddf, ["a"], "skip")
    with pytest.raises(DataError, match="label"):
        apply_missing_policy(ddf, ["a", "label"], "fail")
    with pytest.raises(ConfigError, match=r"lack feature columns \['b'\]"):
        apply_missing_policy(ddf, ["a", "b"], "impute_median", medians={"a": 0.0})
