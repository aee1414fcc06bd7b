"""ECOD and COPOD scoring against frozen empirical CDFs.

PyOD's ``ECOD.decision_function(X)`` and ``COPOD.decision_function(X)`` re-fit on the
training data *plus* ``X``: a row's score depends on the batch it is scored in, and every
call pays a pass over the training data. ADP freezes the per-feature ECDFs of the training
sample at fit time and scores each row against them alone, so a row's score depends only on
the fitted model and the row. On the training rows the scores equal PyOD's
``decision_scores_`` exactly (same ECDF with ties resolved to the right, same skewness).

A value below (above) every training value has an empirical left (right) tail probability
of zero; ADP gives it ``1 / (n + 1)``, just beyond the most extreme training row, so its
score is finite and larger than any training row's on that feature.

Scoring is compiled (numba; one thread, ``nogil``, no ``fastmath``). For every cell it
counts the training values ``<= x`` and ``< x`` exactly (ties included), looks ``-log`` of
the tail probabilities up in a table of the ``n + 1`` possible values (the reference's
arithmetic, so no rounding differs) and combines them as ECOD or COPOD does. The counts come
from a per-feature bucket index: about two training values per bucket, the bucket of a
value given by a cheap map chosen per feature at fit time (equal widths over the training
range, or a log-like scale for heavy tails; ``bucket_maps_``), and the position in the
sorted column where each bucket starts. A cell computes its bucket, reads where it starts
and ends and counts the few values between. Every bucket is checked against the sorted
column itself (a cell outside it is counted by bisecting the column), so no rounding in a
map can change a count: the maps affect speed only.

The work is arranged for the memory system rather than for the interpreter: rows go in
chunks, transposed so that a feature's values are contiguous, and for one feature at a
time the kernel first looks up every row's bucket, then counts inside the buckets, then
adds the terms, so that the random reads of one pass are independent of each other and
overlap. Results equal the NumPy reference (:meth:`FrozenEcdfScorer.reference_dimension_scores`,
the pre-compiled implementation) exactly per cell, and up to the order of the additions per
row. A missing value counts as NumPy's ``searchsorted`` places it (after every training
value); a training sample with non-finite values is scored by the NumPy reference.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy.stats import skew

from adp.detect import ecdf_reference as reference
from adp.detect.ecdf_kernels import (
    CELLS,
    CENTER,
    INV_WIDTH,
    KEY_SCALE,
    LOG,
    NB,
    ORIGIN,
    PAD,
    ROWS,
    SCALE,
    TAILS,
    score_kernel,
)
from adp.errors import DataError

Method = Literal["ecod", "copod"]

MAX_BUCKETS = 65_536
"""Most buckets per feature of the index (fewer for small samples, see :func:`n_buckets`)."""
ROWS_PER_BUCKET = 2
"""Training rows per bucket the index aims for."""
CHUNK_CELLS = 4_194_304
"""Cells (rows x features) the kernels transpose and score at a time (32 MiB)."""
_CHUNK_ROWS = (16_384, 131_072)  # bounds on the rows of a chunk
_STATE = ("method", "n_train_", "skew_sign_", "sorted_columns_", "bucket_maps_")


def n_buckets(n_train: int) -> int:
    """Buckets per feature for a training sample of ``n_train`` rows.

    Parameters
    ----------
    n_train : int
        Rows of the training sample.

    Returns
    -------
    int
        ``n_train // ROWS_PER_BUCKET`` clipped to ``[1, MAX_BUCKETS]``.
    """
    return int(min(MAX_BUCKETS, max(1, n_train // ROWS_PER_BUCKET)))


def _log_scale(x: np.ndarray, center: float, scale: float, key_scale: float) -> np.ndarray:
    """``t(x) = sign(x - c) * (K(|x - c| + s) - K(s))``, with ``K`` the bit pattern of a
    positive float read as an integer (exponent and mantissa: about ``2**52 * log2``).

    Monotone in ``x`` and cheap in a kernel: buckets of equal width in ``t`` are about
    logarithmic away from ``c`` and about linear within ``s`` of it. ``key_scale`` is
    ``K(s)`` as a float.
    """
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # a range wider than a float: inf
        magnitude = np.abs(x - center) + scale
    keys = magnitude.view(np.int64).astype(np.float64) - key_scale
    return np.where(x >= center, keys, -keys)


def _bucket_of(x: np.ndarray, bucket_map: np.ndarray) -> np.ndarray:
    """The bucket of each value of ``x`` under a row of ``bucket_maps_``, in ``[0, nb)``.

    The same arithmetic as the kernels (which must agree with it only for speed: they check
    every bucket against the sorted column).
    """
    nb = bucket_map[NB]
    if bucket_map[LOG]:
        t = _log_scale(x, bucket_map[CENTER], bucket_map[SCALE], bucket_map[KEY_SCALE])
    else:
        t = np.asarray(x, dtype=np.float64)
    f = (t - bucket_map[ORIGIN]) * bucket_map[INV_WIDTH]
    return np.where(f < 0, 0, np.where(f < nb, f, nb - 1)).astype(np.int64)


def _bucket_maps(col: np.ndarray, nb: int) -> list[np.ndarray]:
    """Candidate maps of a value to one of ``nb`` buckets (rows of ``bucket_maps_``).

    The bucket of ``x`` is ``(t(x) - origin) * inv_width`` for ``t(x) = x`` (equal widths,
    when the range is finite) or the log-like :func:`_log_scale` from the minimum, from the
    maximum and from the median, for heavy-tailed columns.
    """
    n = col.size
    lo, hi = float(col[0]), float(col[-1])
    maps = []
    if np.isfinite(hi - lo):
        maps.append(np.array([nb, 0, lo, nb / (hi - lo), 0, 0, 0], dtype=np.float64))

    def quantile(q: float) -> float:
        return float(col[min(n - 1, int(q * n))])

    above_lo = float(col[np.searchsorted(col, lo, side="right")])
    below_hi = float(col[np.searchsorted(col, hi, side="left") - 1])
    lower = quantile(0.01) - lo if quantile(0.01) > lo else above_lo - lo
    upper = hi - quantile(0.99) if quantile(0.99) < hi else hi - below_hi
    middle = (quantile(0.51) - quantile(0.49)) / 2
    for center, scale in ((lo, lower), (hi, upper), (quantile(0.5), middle)):
        if not (scale > 0 and np.isfinite(scale)):
            continue
        key_scale = float(np.array(scale).view(np.int64))
        t_lo, t_hi = _log_scale(np.array([lo, hi]), center, scale, key_scale)
        if t_hi > t_lo and np.isfinite(t_hi - t_lo):
            row = [nb, 1, t_lo, nb / (t_hi - t_lo), center, scale, key_scale]
            maps.append(np.array(row, dtype=np.float64))
    return maps


def _choose_bucket_map(col: np.ndarray, nb: int) -> np.ndarray:
    """The candidate map whose buckets hold the fewest training values per cell.

    Cost: the expected number of training values in the bucket of a cell drawn like them
    (``sum(count ** 2) / n``); a log map costs a little more per cell, so it is chosen only
    when it halves that. A constant column, or one that no map spans, gets one bucket.
    """
    best, best_cost = np.array([1, 0, col[0], 0, 0, 0, 0], dtype=np.float64), np.inf
    for candidate in _bucket_maps(col, nb) if nb > 1 else []:
        counts = np.bincount(_bucket_of(col, candidate), minlength=nb).astype(np.float64)
        cost = float(counts @ counts) / col.size * (2.0 if candidate[LOG] else 1.0)
        if cost < best_cost:
            best, best_cost = candidate, cost
    return best


class FrozenEcdfScorer:
    """Score rows with ECOD or COPOD against per-feature ECDFs fixed at fit time.

    Parameters
    ----------
    X_train : ndarray of shape (n_samples, n_features)
        The training sample.
    method : {"ecod", "copod"}
        Which aggregation of the tail probabilities to use.

    Attributes
    ----------
    sorted_columns_ : ndarray of shape (n_features, n_samples)
        Each training column, sorted (the only large array; it is what is pickled).
    n_train_ : int
        Rows of the training sample.
    skew_sign_ : ndarray of shape (n_features,)
        Sign of each column's skewness (0 for a constant column).
    bucket_maps_ : ndarray of shape (n_features, 7)
        How each feature's values map to the buckets of its index (chosen at fit time for
        speed only; see :func:`n_buckets` and the module docstring).
    """

    def __init__(self, X_train: np.ndarray, method: Method) -> None:
        X_train = np.asarray(X_train, dtype=np.float64)
        if X_train.ndim != 2 or X_train.shape[0] == 0:
            raise DataError(
                f"the ECDF training sample must be a non-empty 2-D array, got shape {X_train.shape}"
            )
        self.method: Method = method
        self.sorted_columns_ = np.sort(X_train, axis=0).T
        self.n_train_ = int(X_train.shape[0])
        self.skew_sign_ = np.sign(np.nan_to_num(skew(X_train, axis=0)))
        self._build_index(None)

    # -- state -------------------------------------------------------------------------

    @property
    def sorted_train_(self) -> np.ndarray:
        """The sorted training columns as rows x features (a view of ``sorted_columns_``)."""
        return self.sorted_columns_.T

    def __getstate__(self) -> dict[str, Any]:
        # Only the fitted state travels; the index is rebuilt from it in milliseconds.
        return {name: getattr(self, name) for name in _STATE}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if "sorted_columns_" not in state:  # pickled before the compiled scorer
            state["sorted_columns_"] = np.ascontiguousarray(
                np.asarray(state.pop("sorted_train_"), dtype=np.float64).T
            )
        for name in _STATE[:-1]:
            setattr(self, name, state[name])
        self._build_index(state.get("bucket_maps_"))

    def _build_index(self, bucket_maps: np.ndarray | None) -> None:
        """Pad the sorted columns, tabulate ``-log`` and index the buckets of every feature.

        ``bucket_maps`` (from a pickle) saves choosing each feature's map again.
        """
        d, n = self.sorted_columns_.shape
        padded = np.full((d, n + PAD), np.inf)
        padded[:, :n] = self.sorted_columns_
        self._padded = padded
        self.sorted_columns_ = cols = padded[:, :n]
        floor = 1.0 / (n + 1)
        # The reference's arithmetic, -log(max(k / n, 1 / (n + 1))), for k = 0..n
        table = -np.log(np.maximum(np.arange(n + 1) / n, floor))
        self._table = table
        s = self.skew_sign_
        self._left_coef = -1 * np.sign(s - 1)
        self._right_coef = np.sign(s + 1)
        # ECOD on a skewed feature: the term is max(u_left, u_right), one lookup in a
        # non-increasing table at min(k_right, n - k_left)
        monotone = bool(np.all(np.diff(table) <= 0))
        self._one_lookup = (s != 0) & (self.method == "ecod") & monotone
        self._compiled = bool(np.isfinite(cols).all()) and n < np.iinfo(np.int32).max
        if not self._compiled:
            bucket_maps = np.zeros((d, 7))
            bucket_maps[:, NB] = 1
        elif bucket_maps is None or np.shape(bucket_maps) != (d, 7):  # fitting, or an old pickle
            nb = n_buckets(n)
            bucket_maps = np.array(
                [
                    _choose_bucket_map(cols[j], nb if cols[j, -1] > cols[j, 0] else 1)
                    for j in range(d)
                ]
            ).reshape(d, 7)
        maps = np.asarray(bucket_maps, dtype=np.float64)
        self.bucket_maps_ = maps
        # starts[j, b]: the training values of feature j in buckets before b (a prefix of the
        # sorted column, ending between runs of ties since equal values share a bucket)
        self._starts = np.zeros((d, int(maps[:, NB].max(initial=1)) + 1), dtype=np.int32)
        if self._compiled:
            for j in range(d):
                nb = int(maps[j, NB])
                counts = np.bincount(_bucket_of(cols[j], maps[j]), minlength=nb)
                self._starts[j, 1 : nb + 1] = np.cumsum(counts)
        self._lo = cols[:, 0].copy()
        self._hi = cols[:, -1].copy()
        self._right_at_lo = np.array(
            [np.searchsorted(cols[j], cols[j, 0], side="right") for j in range(d)], dtype=np.int64
        ).reshape(d)
        self._left_at_hi = np.array(
            [np.searchsorted(cols[j], cols[j, -1], side="left") for j in range(d)], dtype=np.int64
        ).reshape(d)

    def _check(self, X: np.ndarray) -> np.ndarray:
        # C order always: one compiled specialisation (the kernels transpose chunks anyway)
        X = np.ascontiguousarray(X, dtype=np.float64)
        d = self.sorted_columns_.shape[0]
        if X.ndim != 2 or X.shape[1] != d:
            raise DataError(f"X must be a 2-D array with {d} columns, got shape {X.shape}")
        return X

    # -- scoring -----------------------------------------------------------------------

    def _run(self, X: np.ndarray, mode: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m, d = X.shape
        rows = np.empty(m if mode == ROWS else 0)
        cells = np.empty((m, d) if mode != ROWS else (0, 0))
        right = np.empty((m, d) if mode == TAILS else (0, 0))
        chunk = int(np.clip(CHUNK_CELLS // max(d, 1), *_CHUNK_ROWS))
        score_kernel(
            X,
            self._padded,
            self._starts,
            self.bucket_maps_,
            self._lo,
            self._hi,
            self._right_at_lo,
            self._left_at_hi,
            self._table,
            self._left_coef,
            self._right_coef,
            self._one_lookup,
            self.method != "ecod",
            chunk,
            mode,
            rows,
            cells,
            right,
        )
        return rows, cells, right

    def tail_log_probabilities(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``-log`` of the left and right tail probabilities of every cell of ``X``.

        Parameters
        ----------
        X : ndarray of shape (n_rows, n_features)
            Rows to score.

        Returns
        -------
        u_left, u_right : ndarray of shape (n_rows, n_features)
            ``-log`` of the share of training values at or below (at or above) each cell,
            floored at ``1 / (n + 1)``.
        """
        X = self._check(X)
        if not self._compiled:
            return self.reference_tail_log_probabilities(X)
        _, u_left, u_right = self._run(X, TAILS)
        return u_left, u_right

    def dimension_scores(self, X: np.ndarray) -> np.ndarray:
        """Per-feature outlyingness (rows x features); their row sums are the scores.

        Parameters
        ----------
        X : ndarray of shape (n_rows, n_features)
            Rows to score.

        Returns
        -------
        ndarray of shape (n_rows, n_features)
            Each cell's ECOD or COPOD term.
        """
        X = self._check(X)
        if not self._compiled:
            return self.reference_dimension_scores(X)
        return self._run(X, CELLS)[1]

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Anomaly scores of ``X`` (higher is more anomalous).

        Parameters
        ----------
        X : ndarray of shape (n_rows, n_features)
            Rows to score.

        Returns
        -------
        ndarray of shape (n_rows,)
            The row sums of :meth:`dimension_scores`.
        """
        X = self._check(X)
        if not self._compiled:
            return self.reference_dimension_scores(X).sum(axis=1)
        return self._run(X, ROWS)[0]

    # -- the NumPy reference (adp.detect.ecdf_reference) --------------------------------

    def reference_tail_log_probabilities(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`tail_log_probabilities` with NumPy: two ``searchsorted`` per feature.

        Parameters
        ----------
        X : ndarray of shape (n_rows, n_features)
            Rows to score.

        Returns
        -------
        u_left, u_right : ndarray of shape (n_rows, n_features)
            As :meth:`tail_log_probabilities`.
        """
        return reference.tail_log_probabilities(self.sorted_columns_, self._check(X))

    def reference_dimension_scores(self, X: np.ndarray) -> np.ndarray:
        """:meth:`dimension_scores` with NumPy (the definition the compiled path follows).

        Parameters
        ----------
        X : ndarray of shape (n_rows, n_features)
            Rows to score.

        Returns
        -------
        ndarray of shape (n_rows, n_features)
            As :meth:`dimension_scores`.
        """
        return reference.dimension_scores(
            self.sorted_columns_, self.skew_sign_, self.method, self._check(X)
        )
