"""A compiled isolation-forest scorer: scikit-learn's scores, faster.

scikit-learn's ``IsolationForest.score_samples`` walks each tree with ``tree.apply``: one
row at a time, every step a data-dependent branch. :class:`CompiledForest` re-encodes each
tree as a *complete* binary tree of the forest's depth ``D`` (node ``i`` has children
``2i + 1`` and ``2i + 2``); a leaf reached early is padded with pseudo-nodes whose threshold
is ``+inf``, so they always go left. Every row then takes exactly ``D`` branch-free steps
``i = 2i + 1 + (x[feature[i]] > threshold[i])`` and ends in one of ``2**D`` slots holding
the leaf's path length (its depth plus the average path length of its training rows, less
one). The kernel scores a block of rows one tree level at a time, so the steps of different
rows are independent and the CPU overlaps them.

The scores equal scikit-learn's bit for bit: ``X`` is rounded to float32 first and compared
in float64 against the float64 thresholds (as ``tree.apply`` does), the per-row path lengths
are summed in float64 in tree order, and the final formula is scikit-learn's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length
from sklearn.tree import ExtraTreeRegressor

from adp.errors import DataError, DetectorError

MAX_DEPTH = 14
"""Deepest tree compiled (a complete tree of depth 14 has 16383 nodes); deeper: scikit-learn."""

_BLOCK = 128  # rows walked together: their steps are independent, so the CPU overlaps them
_U = np.uint64


class UnsupportedForest(DetectorError):
    """The forest cannot be compiled (not a plain scikit-learn forest, or too deep)."""


class NonFiniteInput(DataError):
    """``X`` holds NaN or infinite values, which the compiled kernel does not handle."""


@njit(cache=True, nogil=True)
def _path_lengths(
    X: np.ndarray,
    features: np.ndarray,
    thresholds: np.ndarray,
    leaves: np.ndarray,
    depth: int,
    out: np.ndarray,
) -> bool:  # pragma: no cover - compiled
    """``out[r]``: the path lengths of row ``r`` of ``X`` summed over the trees, in order.

    Returns ``False``, ``out`` unfinished, at the first block with a NaN or infinite value.
    Node and row indices are unsigned (``_U``): numba then skips its negative-index
    wraparound, which would otherwise double the instructions of a step.
    """
    n_rows, n_cols = X.shape
    n_trees, n_nodes = features.shape
    flat = X.reshape(n_rows * n_cols)
    width = _U(n_cols)
    node = np.zeros(_BLOCK, np.uint64)  # each row's current node in the tree being walked
    total = np.zeros(_BLOCK)
    # plain loops throughout: slice assignments would triple the compile time
    for start in range(0, n_rows, _BLOCK):
        m = min(n_rows - start, _BLOCK)
        rows = flat[start * n_cols : (start + m) * n_cols]
        for j in range(rows.size):
            if not np.isfinite(rows[j]):
                return False
        for r in range(m):
            total[r] = 0.0
        for t in range(n_trees):
            feature = features[t]
            threshold = thresholds[t]
            for r in range(m):
                node[r] = 0
            for _ in range(depth):  # one level for every row, then the next level
                for r in range(_U(m)):
                    i = node[r]
                    x = rows[r * width + feature[i]]
                    node[r] = i + i + _U(1) + _U(x > threshold[i])
            leaf = leaves[t]
            for r in range(_U(m)):
                total[r] += leaf[node[r] - _U(n_nodes)]
        for r in range(m):
            out[start + r] = total[r]
    return True


def _encode_tree(
    est: ExtraTreeRegressor,
    columns: np.ndarray | None,
    leaf_values: np.ndarray,
    depth: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One tree as complete-tree arrays: features, thresholds and the ``2**depth`` leaves."""
    tree = est.tree_
    n_nodes = 2**depth - 1
    features = np.zeros(n_nodes, np.uint32)
    thresholds = np.full(n_nodes, np.inf)
    leaves = np.zeros(n_nodes + 1)
    nodes = np.array([0])  # scikit-learn node ids of one level, and their complete positions
    positions = np.array([0])
    for level in range(depth + 1):
        is_leaf = tree.children_left[nodes] == -1
        # a leaf at this level lands, after (depth - level) left steps, in this slot:
        slots = (positions[is_leaf] + 1) * 2 ** (depth - level) - 1 - n_nodes
        leaves[slots] = leaf_values[nodes[is_leaf]]
        split, at = nodes[~is_leaf], positions[~is_leaf]
        feature = tree.feature[split]
        features[at] = feature if columns is None else columns[feature]
        thresholds[at] = tree.threshold[split]
        nodes = np.concatenate([tree.children_left[split], tree.children_right[split]])
        positions = np.concatenate([2 * at + 1, 2 * at + 2])
    return features, thresholds, leaves


@dataclass(frozen=True, eq=False)
class CompiledForest:
    """A fitted ``IsolationForest`` as flat arrays that a compiled kernel scores.

    Build one with :meth:`from_forest`. It holds only numpy arrays (cheap to pickle).

    Attributes
    ----------
    features : ndarray of uint32, shape (n_trees, 2**depth - 1)
        The column of ``X`` each node splits on (padding nodes: 0).
    thresholds : ndarray of float64, shape (n_trees, 2**depth - 1)
        Rows with ``x <= threshold`` go left (padding nodes: ``+inf``).
    leaves : ndarray of float64, shape (n_trees, 2**depth)
        Each leaf slot's path length: depth + average path length - 1, as scikit-learn.
    depth : int
        The depth of every (complete) tree.
    n_features : int
        Columns ``X`` must have.
    denominator : float
        ``n_trees * c(max_samples)``, the normaliser of the summed path lengths.
    """

    features: np.ndarray
    thresholds: np.ndarray
    leaves: np.ndarray
    depth: int
    n_features: int
    denominator: float

    @classmethod
    def from_forest(cls, forest: Any, max_depth: int = MAX_DEPTH) -> CompiledForest:
        """Compile a fitted scikit-learn ``IsolationForest``.

        Parameters
        ----------
        forest : IsolationForest
            Fitted, with ``ExtraTreeRegressor`` trees (merged forests of
            :func:`adp.detect.forest.merge` qualify).
        max_depth : int
            The deepest tree accepted (the arrays grow as ``2**depth`` per tree).

        Raises
        ------
        UnsupportedForest
            For anything else (a subclass, other trees, a tree deeper than ``max_depth``).
        """
        if type(forest) is not IsolationForest or not hasattr(forest, "estimators_"):
            raise UnsupportedForest(f"not a fitted IsolationForest: {type(forest).__name__}")
        trees = forest.estimators_
        if not trees or any(type(t) is not ExtraTreeRegressor for t in trees):
            raise UnsupportedForest("the forest's trees are not all ExtraTreeRegressor")
        depth = max(int(t.tree_.max_depth) for t in trees)
        if depth > max_depth:
            raise UnsupportedForest(f"trees of depth {depth} > {max_depth}")
        n_features = int(forest.n_features_in_)
        # scikit-learn indexes X by estimators_features_ only when features are subsampled
        subsampled = forest._max_features != n_features
        encoded = [
            _encode_tree(
                tree,
                np.asarray(columns) if subsampled else None,
                path_lengths + average - 1.0,
                depth,
            )
            for tree, columns, path_lengths, average in zip(
                trees,
                forest.estimators_features_,
                forest._decision_path_lengths,
                forest._average_path_length_per_tree,
                strict=True,
            )
        ]
        denominator = len(trees) * _average_path_length([forest._max_samples])
        return cls(
            features=np.ascontiguousarray([e[0] for e in encoded], dtype=np.uint32),
            thresholds=np.ascontiguousarray([e[1] for e in encoded], dtype=np.float64),
            leaves=np.ascontiguousarray([e[2] for e in encoded], dtype=np.float64),
            depth=depth,
            n_features=n_features,
            denominator=float(denominator[0]),
        )

    def score_samples(self, X: Any) -> np.ndarray:
        """scikit-learn's ``IsolationForest.score_samples(X)`` (lower = more abnormal).

        Parameters
        ----------
        X : array-like of shape (n_rows, n_features)
            Rounded to float32 first, as scikit-learn does.

        Raises
        ------
        NonFiniteInput
            When a value of ``X`` is NaN or infinite (after the rounding).
        """
        with np.errstate(over="ignore"):  # too large for float32: inf, refused below
            X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise DataError(f"X has shape {X.shape}; the forest expects {self.n_features} features")
        depths = np.empty(X.shape[0])
        if not _path_lengths(X, self.features, self.thresholds, self.leaves, self.depth, depths):
            raise NonFiniteInput("X has NaN or infinite values")
        denominator = self.denominator
        # scikit-learn's formula, operation for operation
        scores = 2 ** (
            -np.divide(depths, denominator, out=np.ones_like(depths), where=denominator != 0)
        )
        return np.asarray(-scores, dtype=np.float64)
