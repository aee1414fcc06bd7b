"""The encoders on their own (no cluster): categories as strings, unseen and missing
categories, text residuals, auto classification, the column plan's errors, and the sample."""

from __future__ import annotations

import pickle

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from adp.context import Context
from adp.context.encodings import (
    MISSING,
    category_values,
    classify,
    fit_categorical,
    fit_encodings,
    fit_text,
    plan_columns,
)
from adp.context.sampling import sample_rows
from adp.errors import DataError

WORDS = ["the", "pump", "was", "checked", "and", "all", "readings", "look", "normal", "today"]


def _comments(n: int, seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    return pd.Series([" ".join(rng.choice(WORDS, 6)) for _ in range(n)])


def test_categories_are_strings_and_whole_floats_match_integers() -> None:
    as_int = category_values(pd.Series([3, 4, 3]))
    as_float = category_values(pd.Series([3.0, np.nan, 2.5]))
    assert list(as_int) == ["3", "4", "3"]
    assert list(as_float) == ["3", MISSING, "2.5"]
    assert list(category_values(pd.Series(["a", None], dtype="str"))) == ["a", MISSING]
    cat = pd.Series(["x", "y", None], dtype="category")
    assert list(category_values(cat)) == ["x", "y", MISSING]


def test_unseen_categories_get_no_frequency_and_no_bit() -> None:
    sample = pd.Series(["red"] * 6 + ["blue"] * 3 + [None])
    enc = fit_categorical("colour", sample, top=2)
    assert enc.feature_names == ["colour.freq", "colour=red", "colour=blue"]
    out = enc.transform(pd.Series(["red", "purple", None, "blue"]))
    np.testing.assert_allclose(out["colour.freq"], [0.6, 0.0, 0.1, 0.3])
    np.testing.assert_array_equal(out["colour=red"], [1, 0, 0, 0])
    np.testing.assert_array_equal(out["colour=blue"], [0, 0, 0, 1])
    # the missing category is one of its own: one-hot when frequent enough
    wide = fit_categorical("colour", sample, top=3)
    assert wide.feature_names[-1] == f"colour={MISSING}"


def test_text_unlike_the_sample_has_a_larger_residual() -> None:
    enc = fit_text("comment", _comments(500), components=4)
    names = enc.feature_names
    assert names == [*(f"comment.svd{i}" for i in range(4)), "comment.svd_residual"]
    out = enc.transform(pd.Series(["all readings look normal today", "smoke and fire", None]))
    residual = out["comment.svd_residual"]
    assert residual[1] > residual[0]
    assert residual[2] == 0.0 and all(out[n][2] == 0.0 for n in names)  # missing: empty
    assert all(v.dtype == np.float64 for v in out.values())


def test_each_row_is_encoded_alone() -> None:
    enc = fit_encodings(
        pd.DataFrame({"c": ["a", "b", "a"] * 50, "t": _comments(150)}),
        plan_columns(Context(categorical=["c"], text=["t"]), {"c": "str", "t": "str"}, ["c", "t"]),
        top=5,
        components=3,
    )
    rows = pd.DataFrame({"c": ["b", "zz", "a"], "t": ["pump checked", "fire", "normal today"]})
    whole = enc.transform(rows)
    for i in range(len(rows)):
        alone = enc.transform(rows.iloc[[i]])
        for name, values in whole.items():
            assert alone[name][0] == values[i], name
    restored = pickle.loads(pickle.dumps(enc))
    for name, values in restored.transform(rows).items():
        np.testing.assert_array_equal(values, whole[name])


def test_auto_tells_text_from_categories() -> None:
    assert classify(_comments(200)) == "text"
    assert classify(pd.Series(["red", "green"] * 100)) == "categorical"
    assert classify(pd.Series(["New York City", "Rio de Janeiro"] * 100)) == "categorical"
    assert classify(pd.Series([None, None], dtype=object)) == "categorical"


def test_the_plan_names_the_column_at_fault() -> None:
    dtypes = {"x": np.dtype("f8"), "s": pd.StringDtype(), "when": np.dtype("M8[ns]")}
    plan = plan_columns(Context(categorical="auto"), dtypes, ["x", "s"])
    assert plan.numeric == ("x",) and plan.auto == ("s",) and plan.auto_kind == "categorical"
    with pytest.raises(DataError, match="column 'when' is of type datetime64") as info:
        plan_columns(Context(categorical="auto"), dtypes, ["x", "s", "when"])
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match=r"context=\{'categorical': \['s'\]\}"):
        plan_columns(Context(text=["t"]), {**dtypes, "t": pd.StringDtype()}, ["x", "s", "t"])
    with pytest.raises(DataError, match="context.text: column 'x' is of type float64"):
        plan_columns(Context(text=["x"]), dtypes, ["x"])
    with pytest.raises(DataError, match=r"encoded columns \['gone'\] are not in the data"):
        plan_columns(Context(categorical=["gone"]), dtypes, ["x"])
    odd = pd.DataFrame({"tags": [["a"], ["b"]]})
    plan = plan_columns(Context(categorical="auto"), odd.dtypes, ["tags"])
    with pytest.raises(DataError, match="column 'tags' is of type object holding"):
        fit_encodings(odd, plan, top=3, components=2)


def test_the_sample_is_uniform_bounded_and_the_same_for_any_partitioning() -> None:
    frame = pd.DataFrame({"c": np.arange(5_000) % 7, "s": [f"v{i % 3}" for i in range(5_000)]})
    with dask.config.set(scheduler="synchronous"):
        one, many = dask.compute(
            sample_rows(dd.from_pandas(frame, npartitions=1), ["c", "s"], 800),
            sample_rows(dd.from_pandas(frame, npartitions=23), ["c", "s"], 800),
        )
        everything = sample_rows(dd.from_pandas(frame, npartitions=4), ["c"], 10_000).compute()
    assert len(one) == 800 and list(one.columns) == ["c", "s"]
    pd.testing.assert_frame_equal(one, many)
    assert one.index.is_unique and set(one.index) <= set(frame.index)
    shares = one["c"].value_counts(normalize=True)
    assert shares.min() > 0.5 / 7 and shares.max() < 2 / 7  # not one corner of the data
    assert sorted(everything.index) == list(frame.index)
