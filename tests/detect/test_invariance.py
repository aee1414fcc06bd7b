"""Every registered detector scores a row from the fitted model and the row alone: the same
rows scored as 1 partition and as 7 partitions get the same scores (on the shared cluster)."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client

import adp
from adp.detect.registry import all_detectors

# Small settings so that the slow detectors (torch, quadratic fits) stay cheap here.
FAST = {
    "lunar": {"n_epochs": 3},
    "autoencoder": {"epoch_num": 2},
    "deep_svdd": {"epochs": 2},
    "feature_bagging": {"n_estimators": 3},
    "isolation_forest": {"n_estimators": 20},
    "sklearn_isolation_forest": {"n_estimators": 20},
    "inne": {"n_estimators": 20},
}
FLOAT32 = {"lunar", "autoencoder", "deep_svdd"}  # torch: float32 arithmetic


def _data(n: int, d: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[: n // 20] += 4
    return pd.DataFrame(X, columns=[f"f{j}" for j in range(d)])


AVAILABLE = [i for i in all_detectors() if i.is_available()]
#: Over ~2 s each on 2 cores (torch, quadratic fits): run by `make test`, not `make test-fast`.
SLOW = {"autoencoder", "deep_svdd", "lunar", "abod", "cblof", "qmcd", "rod"}
CASES = [
    pytest.param(i, marks=pytest.mark.slow) if i.name in SLOW else pytest.param(i)
    for i in AVAILABLE
]


@pytest.mark.parametrize("info", CASES, ids=lambda i: i.name)
def test_scores_do_not_depend_on_the_partitioning(client: Client, info) -> None:
    d = 1 if info.name == "mad" else 4
    train = dd.from_pandas(_data(240, d, seed=1), npartitions=3)
    rows = _data(140, d, seed=2)
    params = {**FAST.get(info.name, {})}
    if "random_state" in info.valid_params():
        params["random_state"] = 0
    det = adp.create_detector(info.name, **params).fit(train)

    one = det.decision_function(dd.from_pandas(rows, npartitions=1))
    seven = det.decision_function(dd.from_pandas(rows, npartitions=7))
    assert seven.npartitions == 7
    whole, split = dask.compute(one, seven)
    assert whole.index.equals(rows.index) and split.index.equals(rows.index)
    a, b = whole.to_numpy(), split.to_numpy()
    assert np.isfinite(a).all()
    assert a.std() > 0, "a constant score cannot show anything"
    tol = 1e-5 if info.name in FLOAT32 else 1e-10
    np.testing.assert_allclose(b, a, rtol=tol, atol=tol)
