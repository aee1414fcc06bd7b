"""Review strategies: which rows an analyst should label next.

Each strategy gives every candidate row a priority on the workers, one partition at a time,
keeps the ``n`` best of each partition and combines those (dask's ``nlargest`` /
``nsmallest`` reductions), so only ``n`` rows per partition ever reach the client:

- ``top``: the highest scores;
- ``uncertain``: the scores closest to the threshold (``|score - threshold|``, smallest);
- ``disagreement``: the rows an ensemble's members disagree on most: the standard
  deviation of the members' scores, each as its training-score empirical CDF;
- ``diverse``: rows spread over the flagged ones: k-means++ seeding (scikit-learn's
  ``kmeans_plusplus``) over the standardised features of a uniform sample of at most
  ``adp.feedback.diverse-rows`` flagged rows;
- ``random``: the control; each row's priority is a seeded hash of its key, so the draw is
  uniform and does not depend on partitioning.
"""

from __future__ import annotations

from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from adp.detect.features import feature_matrix
from adp.errors import ConfigError
from adp.feedback.keys import KEY_COLUMN
from adp.feedback.scorers import member_ranks

#: The strategies :func:`adp.feedback.review.next_rows` accepts.
STRATEGIES: tuple[str, ...] = ("top", "uncertain", "disagreement", "diverse", "random")
#: The column holding each chosen row's priority under its strategy.
PRIORITY = "priority"


def check_strategy(strategy: str) -> str:
    """Return ``strategy`` if it is one of :data:`STRATEGIES`, else refuse it naming them."""
    if strategy not in STRATEGIES:
        raise ConfigError(
            f"unknown review strategy {strategy!r}; use one of {', '.join(STRATEGIES)}"
        )
    return strategy


def hashed_uniform(keys: pd.Series, seed: int) -> np.ndarray:
    """A number in ``[0, 1)`` for each key text, uniform over keys, fixed by ``seed``."""
    salt = f"{int(seed) % 10**16:016d}"
    hashed = pd.util.hash_pandas_object(keys.astype(object), index=False, hash_key=salt)
    return (hashed.to_numpy(np.uint64) >> np.uint64(11)).astype(np.float64) / float(2**53)


def _meta_with_priority(frame: dd.DataFrame) -> pd.DataFrame:
    meta = frame._meta.copy()
    meta[PRIORITY] = np.empty(0, dtype=np.float64)
    return meta


def _add_distance(part: pd.DataFrame, threshold: float) -> pd.DataFrame:
    out = part.copy()
    out[PRIORITY] = np.abs(out["score"].to_numpy(np.float64) - threshold)
    return out


def _add_random(part: pd.DataFrame, seed: int) -> pd.DataFrame:
    out = part.copy()
    out[PRIORITY] = hashed_uniform(out[KEY_COLUMN], seed) if len(out) else np.empty(0)
    return out


def _add_disagreement(part: pd.DataFrame, scorer: Any, features: list[str]) -> pd.DataFrame:
    out = part.drop(columns=features)
    if len(part):
        X = feature_matrix(part, features, where="rows under review")
        out[PRIORITY] = member_ranks(scorer, X).std(axis=1)
    else:
        out[PRIORITY] = np.empty(0, dtype=np.float64)
    return out


def _largest(frame: dd.DataFrame, n: int, column: str) -> pd.DataFrame:
    chosen: pd.DataFrame = frame.nlargest(n, column).compute()
    return chosen


def _smallest(frame: dd.DataFrame, n: int, column: str) -> pd.DataFrame:
    chosen: pd.DataFrame = frame.nsmallest(n, column).compute()
    return chosen


def pick_top(candidates: dd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` highest-scoring candidates (priority: the score)."""
    chosen = _largest(candidates, n, "score")
    chosen[PRIORITY] = chosen["score"].to_numpy(np.float64)
    return chosen


def pick_uncertain(candidates: dd.DataFrame, n: int, threshold: float) -> pd.DataFrame:
    """The ``n`` candidates scored closest to ``threshold`` (priority: the distance)."""
    ranked = candidates.map_partitions(
        _add_distance, float(threshold), meta=_meta_with_priority(candidates)
    )
    return _smallest(ranked, n, PRIORITY)


def pick_random(candidates: dd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` candidates drawn uniformly (priority: the key's seeded hash, smallest first)."""
    ranked = candidates.map_partitions(_add_random, int(seed), meta=_meta_with_priority(candidates))
    return _smallest(ranked, n, PRIORITY)


def pick_disagreement(rows: dd.DataFrame, n: int, scorer: Any, features: list[str]) -> pd.DataFrame:
    """The ``n`` rows the ensemble's members disagree on most.

    Parameters
    ----------
    rows : dask.dataframe.DataFrame
        Candidate rows with :data:`~adp.feedback.keys.KEY_COLUMN` and the features (the
        missing-value policy applied).
    scorer : EnsembleScorer or Delayed
        The ensemble's fitted scorer (a graph key: :meth:`BaseDetector.model_ref`).
    features : list of str

    Returns
    -------
    pandas.DataFrame
        The chosen rows without their features, ``priority`` the disagreement.
    """
    meta = rows._meta.drop(columns=features)
    meta[PRIORITY] = np.empty(0, dtype=np.float64)
    ranked = rows.map_partitions(_add_disagreement, scorer, list(features), meta=meta)
    return _largest(ranked, n, PRIORITY)


def sample_keys(candidates: dd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """A uniform sample of at most ``size`` candidates (by seeded key hash)."""
    return pick_random(candidates, size, seed)


def _standardised(X: np.ndarray) -> np.ndarray:
    X = np.nan_to_num(np.asarray(X, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    center = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale == 0] = 1.0
    return (X - center) / scale


def kmeans_plusplus_rows(features: pd.DataFrame, n: int, seed: int) -> np.ndarray:
    """Positions of ``n`` rows of ``features`` chosen by k-means++ seeding over their
    standardised values (every row when there are ``n`` or fewer)."""
    if len(features) <= n:
        return np.arange(len(features))
    from sklearn.cluster import kmeans_plusplus

    X = _standardised(features.to_numpy(np.float64))
    _, positions = kmeans_plusplus(X, n_clusters=n, random_state=int(seed) % 2**32)
    return np.asarray(positions)


def filter_keys(rows: dd.DataFrame, keys: Any) -> dd.DataFrame:
    """The rows of ``rows`` whose key text is in ``keys`` (a set, shipped once)."""
    shipped = (
        dask.delayed(frozenset(keys), pure=True) if isinstance(keys, set | frozenset) else keys
    )
    return rows.map_partitions(_keep_keys, shipped, meta=rows._meta)


def _keep_keys(part: pd.DataFrame, keys: frozenset[str]) -> pd.DataFrame:
    return part[part[KEY_COLUMN].isin(keys)]


__all__ = [
    "PRIORITY",
    "STRATEGIES",
    "check_strategy",
    "filter_keys",
    "hashed_uniform",
    "kmeans_plusplus_rows",
    "pick_disagreement",
    "pick_random",
    "pick_top",
    "pick_uncertain",
    "sample_keys",
]
