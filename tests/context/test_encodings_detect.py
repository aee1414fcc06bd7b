"""Detectors on tables with strings, on a real cluster: partition-invariant encodings and
scores, traceable names in explanations, an informative category that lifts the AUC,
fitted encoders that travel with the model, and one-line errors naming the column."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

import adp
from adp.errors import DataError
from adp.models import ModelRegistry

LEVEL = {"pump": 10.0, "fan": -10.0, "valve": 0.0, "motor": 20.0}
OTHER = {"pump": "fan", "fan": "motor", "valve": "pump", "motor": "valve"}
WORDS = ["the", "unit", "was", "checked", "and", "all", "readings", "look", "normal", "today"]
ENCODED = {"categorical": ["kind"], "text": {"columns": ["note"], "components": 4}}


def _table(seed: int = 0, n: int = 3_000, share: float = 0.02) -> pd.DataFrame:
    """Machines of four kinds, each at its own level; the anomalies read another kind's
    level (ordinary for the table, wrong for their kind). Notes are routine text."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(list(LEVEL), n)
    x = np.array([LEVEL[k] for k in kind]) + rng.normal(0, 1, n)
    truth = np.zeros(n, dtype=bool)
    bad = rng.choice(n, int(share * n), replace=False)
    truth[bad] = True
    x[bad] = np.array([LEVEL[OTHER[k]] for k in kind[bad]]) + rng.normal(0, 1, len(bad))
    note = pd.array([" ".join(rng.choice(WORDS, 6)) for _ in range(n)], dtype="str")
    frame = pd.DataFrame(
        {"x": x, "y": rng.normal(0, 1, n), "kind": kind, "note": note, "truth": truth}
    )
    frame.loc[frame.index[:5], "kind"] = None  # missing categories: their own category
    frame.loc[frame.index[5:9], "note"] = None  # missing text: empty text
    return frame


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return _table()


@pytest.fixture(scope="module")
def fitted(client: Client, table: pd.DataFrame) -> adp.Detector:
    det = adp.create_detector("iforest", contamination=0.02, random_state=0, context=ENCODED)
    return det.fit(dd.from_pandas(table, npartitions=3), exclude=["truth"])


def test_features_and_scores_are_the_same_with_1_and_14_partitions(
    fitted: adp.Detector, table: pd.DataFrame
) -> None:
    one = dd.from_pandas(table, npartitions=1)
    many = dd.from_pandas(table, npartitions=14)
    assert many.npartitions == 14
    names = fitted.features_
    feats = [fitted.context_.transform(d) for d in (one, many)]
    assert feats[1].npartitions == 14  # row-wise: no shuffle
    detected = [fitted.detect(d, explain=2) for d in (one, many)]
    a, b, da, db = dask.compute(*feats, *detected)
    a, b, da, db = (f.sort_index() for f in (a, b, da, db))
    assert len(a) == len(b) == len(table)
    np.testing.assert_array_equal(a[names].to_numpy(), b[names].to_numpy())
    assert a[names].std().min() > 0, "constant features could not show a difference"
    np.testing.assert_array_equal(da["score"].to_numpy(), db["score"].to_numpy())
    assert da["is_anomaly"].equals(db["is_anomaly"])
    assert da["top_features"].astype(str).equals(db["top_features"].astype(str))


def test_names_trace_back_to_the_columns(fitted: adp.Detector, table: pd.DataFrame) -> None:
    names = fitted.features_
    assert names[:2] == ["x", "y"]  # numeric columns as they are, without a time column
    assert {"kind.freq", "kind=pump", "kind=<missing>", "note.svd0", "note.svd_residual"} <= set(
        names
    )
    assert all(n.split(".")[0].split("=")[0] in {"x", "y", "kind", "note"} for n in names)
    scored = fitted.detect(dd.from_pandas(table, npartitions=4), explain=2).compute()
    flagged = scored[scored["is_anomaly"] & table["truth"]]
    assert len(flagged) > 0
    explained = {name for tops in flagged["top_features"] for name in tops}
    # the detector found the anomalies by their reading given their kind
    assert "x" in explained and any(n.startswith("kind") for n in explained)


def test_an_informative_category_lifts_the_auc(client: Client) -> None:
    train, test = _table(seed=1), _table(seed=2)
    auc = {}
    for label, extra in (("plain", {}), ("encoded", {"context": {"categorical": ["kind"]}})):
        det = adp.create_detector("iforest", random_state=0, **extra)
        det.fit(dd.from_pandas(train, npartitions=3), exclude=["truth"])
        scores = det.decision_function(dd.from_pandas(test, npartitions=3)).compute()
        auc[label] = roc_auc_score(test.loc[scores.index, "truth"], scores)
    # without the kind the anomalies' readings are ordinary: no better than chance
    assert auc["plain"] < 0.65 < auc["encoded"]
    assert auc["encoded"] - auc["plain"] > 0.3


def test_the_fitted_encoders_travel_with_the_model(
    fitted: adp.Detector, table: pd.DataFrame, tmp_path: Path
) -> None:
    later = _table(seed=7, n=400)
    later.loc[later.index[-3:], "kind"] = "compressor"  # a kind not seen at fit time
    later.loc[later.index[-2:], "note"] = "smoke and a burning smell"
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'm.db'}", str(tmp_path / "store"))
    registry.register(fitted, "machines")
    restored = registry.load("machines@1")
    registry.close()
    a = fitted.decision_function(dd.from_pandas(later, npartitions=2))
    b = restored.decision_function(dd.from_pandas(later, npartitions=5))
    a, b = dask.compute(a, b)
    np.testing.assert_array_equal(a.sort_index().to_numpy(), b.sort_index().to_numpy())
    assert np.isfinite(a).all() and len(a) == len(later)
    feats = fitted.context_.transform(dd.from_pandas(later, npartitions=2)).compute()
    assert (feats.loc[later.index[-3:], "kind.freq"] == 0).all()
    assert (feats.loc[later.index[-3:], [n for n in feats if n.startswith("kind=")]] == 0).all(
        axis=None
    )
    assert feats["note.svd_residual"].iloc[-1] > feats["note.svd_residual"].iloc[:-3].max()
    # the stored frequencies are used, not those of the scored rows
    freq = fitted.context_.encodings.categorical[0]
    seen = feats.loc[later.index[:50]]
    expected = [
        freq.frequency[list(freq.categories).index(k)] for k in seen["kind"].fillna("<missing>")
    ]
    np.testing.assert_array_equal(seen["kind.freq"].to_numpy(), expected)

    copy = clone(fitted)
    assert not copy.is_fitted and copy.get_params()["context"] == ENCODED


def test_the_encoders_are_fitted_on_a_bounded_sample(client: Client, table: pd.DataFrame) -> None:
    det = adp.create_detector("hbos", context={"categorical": "auto", "text": "auto"})
    one = det.fit(dd.from_pandas(table, npartitions=1), exclude=["truth"], sample_rows=500)
    enc = one.context_.encodings
    assert [e.column for e in enc.categorical] == ["kind"] and enc.text[0].column == "note"
    counts = enc.categorical[0].frequency * 500
    np.testing.assert_allclose(counts, np.round(counts))  # shares of 500 rows
    again = clone(det).fit(dd.from_pandas(table, npartitions=6), exclude=["truth"], sample_rows=500)
    np.testing.assert_array_equal(
        enc.categorical[0].frequency, again.context_.encodings.categorical[0].frequency
    )
    np.testing.assert_array_equal(
        enc.text[0].svd.components_, again.context_.encodings.text[0].svd.components_
    )


def test_encodings_beside_per_entity_baselines(client: Client) -> None:
    rng = np.random.default_rng(3)
    n = 600
    frame = pd.DataFrame(
        {
            "sid": np.repeat(["a", "b", "c"], n // 3),
            "t": np.tile(np.arange(n // 3), 3),
            "v": rng.normal(size=n),
            "mode": rng.choice(["auto", "manual"], n),
        }
    )
    ctx = {"by": "sid", "time": "t", "window": 4, "categorical": ["mode"]}
    det = adp.create_detector("hbos", context=ctx).fit(dd.from_pandas(frame, npartitions=3))
    assert det.features_[0] == "v.diff_from_median" and "mode=manual" in det.features_
    one = det.decision_function(dd.from_pandas(frame, npartitions=1))
    many = det.decision_function(dd.from_pandas(frame, npartitions=7))
    one, many = dask.compute(one, many)
    np.testing.assert_array_equal(one.sort_index().to_numpy(), many.sort_index().to_numpy())


def test_mistakes_fail_in_one_line_naming_the_column(client: Client, table: pd.DataFrame) -> None:
    ddf = dd.from_pandas(table, npartitions=2)
    with pytest.raises(DataError, match=r"context=\{'categorical': \['kind'\]\}") as info:
        adp.create_detector("iforest").fit(ddf, features=["x", "kind"])
    assert "\n" not in str(info.value)
    dated = dd.from_pandas(table.assign(seen=pd.Timestamp("2026-01-01")), npartitions=2)
    auto = adp.create_detector("iforest", context={"categorical": "auto"})
    with pytest.raises(DataError, match="column 'seen' is of type datetime64") as info:
        auto.fit(dated, exclude=["truth"])
    assert "\n" not in str(info.value)
    named = adp.create_detector("iforest", context={"text": ["kind", "colour"]})
    with pytest.raises(DataError, match=r"\['colour'\] are not in the data"):
        named.fit(ddf)
    # without encodings nothing changes: string columns are left out
    plain = adp.create_detector("hbos").fit(ddf, exclude=["truth"])
    assert plain.features_ == ["x", "y"] and plain.context_ is None


def test_unusual_text_lifts_the_auc(client: Client) -> None:
    odd = ["smoke", "leak", "burning", "noise", "crack", "smell"]

    def notes(seed: int, n: int = 2_000) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        frame = _table(seed, n=n).drop(columns=["kind", "truth"])
        truth = np.zeros(n, dtype=bool)
        truth[rng.choice(n, n // 50, replace=False)] = True
        frame.loc[truth, "note"] = [
            " ".join([*rng.choice(WORDS, 4), *rng.choice(odd, 2)]) for _ in range(truth.sum())
        ]
        return frame.assign(truth=truth)

    train, test = notes(3), notes(4)
    auc = {}
    for label, extra in (
        ("plain", {}),
        ("auto", {"context": {"categorical": "auto", "text": "auto"}}),
    ):
        det = adp.create_detector("iforest", random_state=0, **extra)
        det.fit(dd.from_pandas(train, npartitions=2), exclude=["truth"])
        scores = det.decision_function(dd.from_pandas(test, npartitions=3)).compute()
        auc[label] = roc_auc_score(test.loc[scores.index, "truth"], scores)
    assert "note.svd_residual" in det.features_  # auto took the notes for text
    assert auc["auto"] - auc["plain"] > 0.2
