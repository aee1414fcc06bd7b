"""The learned selector: nearest benchmark datasets, explicit fallbacks, its table, and
``adp.search`` / a job's ``search:`` section choosing with it by default."""

from __future__ import annotations

import io
import json
import math
import re

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from rich.console import Console

import adp
from adp.errors import ConfigError, DataError
from adp.tuning.api import _resolve_metric
from adp.tuning.metafeatures import NAMES, compute_metafeatures
from adp.tuning.perftable import (
    CANDIDATES,
    DEFAULT_ID,
    PerformanceTable,
    Run,
    load_table,
)
from adp.tuning.selecting import select_detector
from adp.tuning.selector import Selector
from adp.tuning.selector_search import allowed_candidates

IDS = [c[0] for c in CANDIDATES]
P = len(NAMES)


def _table(points: list[np.ndarray], gains: dict[str, list[float]]) -> PerformanceTable:
    """Datasets at ``points`` in meta-feature space; the default scores 0.8, a candidate in
    ``gains`` 0.8 + its gain there (NaN: it failed), every other candidate 0.75."""
    runs = []
    for i, point in enumerate(points):
        auc = [0.75] * len(IDS)
        auc[IDS.index(DEFAULT_ID)] = 0.8
        for cid, values in gains.items():
            auc[IDS.index(cid)] = 0.8 + values[i]
        runs.append(Run(f"d{i}", 0, list(point), auc, list(auc)))
    return PerformanceTable(list(IDS), list(NAMES), runs, {"seeds": [0]})


def _regions(n_a: int = 3, n_b: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    a = [rng.normal(0.0, 0.1, P) for _ in range(n_a)]
    b = [rng.normal(3.0, 0.1, P) for _ in range(n_b)]
    return [*a, *b]


def test_a_candidate_better_on_similar_datasets_is_chosen():
    selector = Selector(_table(_regions(), {"hbos": [0.1, 0.1, 0.1, -0.1, -0.1, -0.1]}))
    near_a = selector.predict(np.full(P, 0.05))
    choice, reason, fallback, proposed = selector.decide(near_a)
    assert (choice, fallback, IDS[proposed]) == ("hbos", False, "hbos")
    assert near_a.confidence[IDS.index("hbos")] > 0.95
    assert near_a.gain[IDS.index("hbos")] == pytest.approx(0.1, abs=0.01)
    assert near_a.utility[IDS.index(DEFAULT_ID)] == 0.0
    assert "hbos" in reason and not reason.startswith("fallback")
    assert sum(near_a.weights.values()) == pytest.approx(1.0)
    assert list(near_a.weights)[0] in {"d0", "d1", "d2"}  # nearest first

    near_b = selector.predict(np.full(P, 2.95))
    choice, reason, fallback, _ = selector.decide(near_b)
    assert (choice, fallback) == (DEFAULT_ID, True)
    assert reason.startswith("fallback: no candidate is expected to beat the default")


def test_fallbacks_when_unlike_everything_or_not_confident():
    selector = Selector(_table(_regions(), {"hbos": [0.1, 0.1, 0.1, -0.1, -0.1, -0.1]}))
    choice, reason, fallback, _ = selector.decide(selector.predict(np.full(P, 60.0)))
    assert (choice, fallback) == (DEFAULT_ID, True) and "unlike every benchmark" in reason

    # One large win among the similar datasets: a good mean, but not a confident one.
    lucky = Selector(_table(_regions(), {"hbos": [0.3, -0.01, -0.01, -0.1, -0.1, -0.1]}))
    prediction = lucky.predict(np.full(P, 0.0))
    assert prediction.utility[IDS.index("hbos")] > lucky.margin
    choice, reason, fallback, _ = lucky.decide(prediction)
    assert (choice, fallback) == (DEFAULT_ID, True)
    assert prediction.confidence[IDS.index("hbos")] < lucky.min_confidence
    assert re.search(r"hbos beat the default on only \d+% of similar", reason)

    # The allowed candidates bound the choice; a failed candidate counts as a large loss.
    gains = {"hbos": [0.1] * 3 + [0.0] * 3, "ecod": [math.nan] * 3 + [0.2] * 3}
    both = Selector(_table(_regions(), gains))
    near_a = both.predict(np.zeros(P))
    assert both.decide(near_a, allowed=["ecod"])[0] == DEFAULT_ID
    assert both.decide(near_a)[0] == "hbos"
    assert near_a.gain[IDS.index("ecod")] < -0.4
    with pytest.raises(ConfigError, match="not in the selection table"):
        both.decide(near_a, allowed=["hbos", "nope"])


def test_selector_refuses_unusable_tables():
    table = _table(_regions(1, 0), {})
    with pytest.raises(ConfigError, match="at least 2 datasets"):
        Selector(table)
    renamed = _table(_regions(), {})
    renamed.metafeature_names = [f"x{i}" for i in range(P)]
    with pytest.raises(ConfigError, match="rebuild it"):
        Selector(renamed)


def test_table_round_trips_through_json(tmp_path):
    table = _table(_regions(), {"hbos": [math.nan, 0.1, 0.1, -0.1, -0.1, -0.1]})
    path = table.save(tmp_path / "t.json")
    assert "NaN" not in path.read_text()
    back = load_table(path)
    assert back.datasets == table.datasets and back.candidates == IDS
    np.testing.assert_allclose(back.matrix(), table.matrix(), atol=1e-6)
    assert math.isnan(back.runs[0].roc_auc[IDS.index("hbos")])
    assert back.without("d0").datasets == ["d1", "d2", "d3", "d4", "d5"]

    with pytest.raises(DataError, match="cannot read the selection table"):
        load_table(tmp_path / "missing.json")
    data = json.loads(path.read_text())
    data["runs"][1]["roc_auc"] = data["runs"][1]["roc_auc"][:3]
    with pytest.raises(DataError, match=r"run 1 \(d1\) has 3 candidate figures"):
        PerformanceTable.from_dict(data)
    with pytest.raises(DataError, match="not a selection table"):
        PerformanceTable.from_dict({"format": 99})


def test_space_names_detectors_for_the_selector():
    assert allowed_candidates(None) is None
    assert allowed_candidates(["hbos", "iforest"]) == [
        c for c in IDS if c.startswith(("hbos", "isolation_forest"))
    ]
    with pytest.raises(ConfigError, match="no evidence for \\['abod'\\]"):
        allowed_candidates(["abod"])
    with pytest.raises(ConfigError, match="space=None or a list of detector names"):
        allowed_candidates({"hbos": {"n_bins": [5, 10]}})


# --------------------------------------------------------------------- on the cluster


def _data(seed: int = 0) -> dd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(1500, 4))
    X[:40] += 4.0
    return dd.from_pandas(pd.DataFrame(X, columns=["a", "b", "c", "d"]), npartitions=3)


@pytest.fixture(scope="module")
def similar_table(client) -> PerformanceTable:
    """A table whose datasets have the test data's own meta-features (so the selector is
    confident): ``pca`` beat the default on all of them."""
    with client.as_current():
        points = [compute_metafeatures(_data(s), random_state=s).vector() for s in range(3)]
    far = [p + 25.0 for p in points]
    return _table([*points, *far], {"pca": [0.1, 0.1, 0.1, -0.2, -0.2, -0.2]})


def test_the_criteria_check_agrees_or_falls_back(client, similar_table):
    ddf = _data(0)
    selector = Selector(similar_table)
    unchecked = select_detector(ddf, None, selector, 0, check_criteria=False, client=client)
    assert unchecked.choice == "pca" and not unchecked.fallback and unchecked.criteria == {}
    checked = select_detector(ddf, None, selector, 0, client=client)
    values = checked.criteria["values"]
    assert set(values) >= {DEFAULT_ID, "pca"} and checked.unchecked == "pca"
    agree = values["pca"] >= values[DEFAULT_ID]
    assert checked.criteria["agree"] is agree
    assert checked.choice == ("pca" if agree else DEFAULT_ID) and checked.fallback is not agree
    assert checked.seconds["total"] >= checked.seconds["metafeatures"] > 0
    json.dumps(checked.as_dict())  # registrable as plain data


def test_unlabelled_search_and_job_use_the_selector(client, similar_table, monkeypatch, tmp_path):
    from adp.jobs.search import run_search_job
    from adp.jobs.spec import JobSpec
    from adp.models.api import ModelRegistry

    monkeypatch.setattr("adp.tuning.perftable.load_table", lambda path=None: similar_table)
    result = adp.search(_data(0), random_state=0, contamination=0.05, client=client)
    assert (result.metric, result.engine, result.supervised) == ("selector", "selector", False)
    selection = result.extra["selection"]
    board = result.leaderboard
    assert board.iloc[0]["detector"] == selection["detector"]
    assert board.iloc[0]["params"] == selection["params"] == result.best_params
    assert set(board["trial"]) == set(range(len(IDS)))
    assert result.best_detector.is_fitted and result.best_detector.name == selection["detector"]
    assert selection["metafeatures"]["values"].keys() == set(NAMES)
    assert 0.0 <= selection["confidence"] <= 1.0

    lake = tmp_path / "lake"
    _data(1).to_parquet(str(lake))
    spec = JobSpec.from_dict(
        {
            "name": "pick",
            "source": {"uri": str(lake), "key": []},
            "search": {"random_state": 1, "register": {"name": "picked"}},
        }
    )
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'm.db'}", str(tmp_path / "store"))
    out = io.StringIO()
    job = run_search_job(spec, client, console=Console(file=out, width=200), registry=registry)
    assert job.metric == "selector" and "selector: " in out.getvalue()
    stored = registry.info("picked", 1).metrics["selection"]
    assert stored["choice"] == job.extra["selection"]["choice"]
    assert stored["metafeatures"]["rows"] == 1500 and "reason" in stored

    # With a space, Model Centrality stays the label-free default.
    assert _resolve_metric(None, None, None) == ("selector", False)
    assert _resolve_metric("roc_auc", None, ["pca"]) == ("model_centrality", False)
    assert _resolve_metric("selector", None, ["pca"]) == ("selector", False)
