"""The review queue on a real LocalCluster: each strategy picks what it promises, from
unreviewed rows only, without the whole output reaching the client."""

from __future__ import annotations

import json
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from adp.errors import ConfigError, DataError, DetectorError
from adp.feedback import next_rows, scored_frame
from adp.feedback.review import with_keys
from adp.feedback.strategies import hashed_uniform, kmeans_plusplus_rows


@pytest.fixture(scope="module")
def scored(ensemble: Any, keyed_ddf: dd.DataFrame) -> Any:
    """The ensemble's flagged, explained rows (persisted) and its threshold."""
    from adp.detect.detection import run_detection

    detection = run_detection(ensemble, keyed_ddf, key=["id"], explain=2)
    return scored_frame(detection.frame.persist(), float(detection.threshold.compute()))


@pytest.fixture(scope="module")
def everything(scored: Any) -> pd.DataFrame:
    return scored.frame.compute()


def test_top_and_uncertain_match_a_pandas_ranking_of_the_whole_output(
    scored: Any, everything: pd.DataFrame
) -> None:
    top = next_rows(scored, 7, "top", reviewed=())
    expected = everything.nlargest(7, "score")
    assert top["id"].tolist() == expected["id"].tolist()
    assert top["strategy"].eq("top").all()
    assert top["row_key"].tolist() == [
        json.dumps({"id": int(i)}).replace(" ", "") for i in expected["id"]
    ]
    assert top["top_features"].map(len).eq(2).all()  # flagged rows come with explanations

    uncertain = next_rows(scored, 9, "uncertain", reviewed=())
    distance = (everything["score"] - scored.threshold).abs()
    assert set(uncertain["id"]) == set(everything.loc[distance.nsmallest(9).index, "id"])
    assert uncertain["priority"].is_monotonic_increasing


def test_reviewed_rows_are_skipped(scored: Any, everything: pd.DataFrame) -> None:
    first = next_rows(scored, 5, "top", reviewed=())
    second = next_rows(scored, 5, "top", reviewed=set(first["row_key"]))
    assert not set(first["id"]) & set(second["id"])
    assert second["id"].tolist() == everything.nlargest(10, "score")["id"].tolist()[5:]


def test_reviewed_rows_come_from_the_models_labels(scored: Any, store: Any) -> None:
    first = next_rows(scored, 4, "top", model="m@1", store=store)
    store.add_many("m@1", [(k, "normal") for k in first["row_key"]], who="alice")
    again = next_rows(scored, 4, "top", model="m@2", store=store)  # labels survive versions
    assert not set(first["id"]) & set(again["id"])


def test_random_is_uniform_seeded_and_partition_invariant(scored: Any) -> None:
    picked = next_rows(scored, 50, "random", reviewed=(), seed=4)
    regrouped = scored_frame(scored.frame.repartition(npartitions=7), scored.threshold)
    assert next_rows(regrouped, 50, "random", reviewed=(), seed=4)["id"].tolist() == (
        picked["id"].tolist()
    )
    assert set(next_rows(scored, 50, "random", reviewed=(), seed=5)["id"]) != set(picked["id"])
    # The priorities are uniform: a Kolmogorov-Smirnov test over 20 000 keys.
    from scipy.stats import kstest

    keys = pd.Series([f'{{"id":{i}}}' for i in range(20_000)])
    assert kstest(hashed_uniform(keys, 4), "uniform").pvalue > 0.001


def test_diverse_picks_distinct_flagged_rows(
    scored: Any, keyed_ddf: dd.DataFrame, ensemble: Any
) -> None:
    picked = next_rows(scored, 6, "diverse", detector=ensemble, source=keyed_ddf, reviewed=())
    assert len(picked) == 6 and picked["id"].is_unique
    assert picked["is_anomaly"].all()
    flagged = set(scored.frame.compute().query("is_anomaly")["id"])
    assert set(picked["id"]) <= flagged


def test_kmeans_plusplus_seeding_takes_one_row_from_each_blob() -> None:
    # Five tight, far-apart blobs of very different sizes: D^2 seeding picks one from each.
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=50, size=(5, 3))
    sizes = [400, 200, 50, 10, 3]
    rows = np.vstack(
        [c + rng.normal(scale=0.1, size=(k, 3)) for c, k in zip(centres, sizes, strict=True)]
    )
    blob = np.repeat(np.arange(5), sizes)
    for seed in range(3):
        picked = kmeans_plusplus_rows(pd.DataFrame(rows), 5, seed)
        assert sorted(blob[picked]) == [0, 1, 2, 3, 4]
    assert kmeans_plusplus_rows(pd.DataFrame(rows[:4]), 5, 0).tolist() == [0, 1, 2, 3]


def test_disagreement_picks_rows_the_members_disagree_on(
    scored: Any, keyed_ddf: dd.DataFrame, ensemble: Any, keyed: pd.DataFrame
) -> None:
    picked = next_rows(scored, 5, "disagreement", detector=ensemble, source=keyed_ddf, reviewed=())
    from adp.feedback.scorers import member_ranks

    ranks = member_ranks(ensemble.scorer_, keyed[["f0", "f1", "f2", "f3"]].to_numpy())
    spread = pd.Series(ranks.std(axis=1), index=keyed["id"])
    assert set(picked["id"]) == set(spread.nlargest(5).index)
    assert np.allclose(picked["priority"], spread.loc[picked["id"]].to_numpy())


def test_disagreement_needs_an_ensemble(
    scored: Any, keyed_ddf: dd.DataFrame, fitted_hbos: Any
) -> None:
    with pytest.raises(DetectorError, match="needs an ensemble"):
        next_rows(scored, 5, "disagreement", detector=fitted_hbos, source=keyed_ddf, reviewed=())


def test_what_a_strategy_lacks_is_named(scored: Any, keyed_ddf: dd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="unknown review strategy 'best'"):
        next_rows(scored, 5, "best", reviewed=())
    with pytest.raises(ConfigError, match="n must be a positive"):
        next_rows(scored, 0, "top", reviewed=())
    no_threshold = scored_frame(scored.frame, None)
    with pytest.raises(ConfigError, match="needs the output's threshold"):
        next_rows(no_threshold, 5, "uncertain", reviewed=())
    with pytest.raises(ConfigError, match="needs the model"):
        next_rows(scored, 5, "disagreement", reviewed=())
    with pytest.raises(DataError, match="no key columns"):
        scored_frame(scored.frame[["score", "is_anomaly"]])


def test_keys_are_added_lazily_on_the_workers(scored: Any) -> None:
    from dask.diagnostics import Callback

    seen: list[str] = []

    class Count(Callback):  # type: ignore[misc]
        def _start(self, dsk: Any) -> None:
            seen.append("computed")

    with Count():
        keyed = with_keys(scored.frame, ["id"], {'{"id":11}'})
    assert not seen and isinstance(keyed, dd.DataFrame)
    assert keyed.columns[0] == "row_key"
    assert '{"id":11}' not in set(keyed["row_key"].compute())
