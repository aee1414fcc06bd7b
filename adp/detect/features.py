"""Choosing and checking the feature columns a detector uses."""

from __future__ import annotations

from collections.abc import Sequence

import dask.dataframe as dd
import numpy as np
import pandas as pd

from adp.context.encodings import is_encodable, plan_columns, unencoded_error
from adp.context.spec import Context
from adp.errors import DataError, bounded, bounded_mapping


def _is_feature_dtype(dtype: object) -> bool:
    return bool(pd.api.types.is_numeric_dtype(dtype)) and not pd.api.types.is_bool_dtype(dtype)


def resolve_features(
    ddf: dd.DataFrame,
    features: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    key: Sequence[str] = (),
    context: Context | None = None,
) -> list[str]:
    """Return the feature columns: the given ones, checked, or every numeric column.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        The dataset (only its metadata is used).
    features : sequence of str, optional
        Explicit feature columns. When omitted: every numeric, non-boolean column not
        named in ``exclude`` or ``key``.
    exclude, key : sequence of str
        Columns that are never features (labels, identifiers).
    context : Context, optional
        A context that encodes categorical or text columns: the columns it names in
        ``categorical`` / ``text`` are input columns too (added when ``features`` omits
        them), and with ``auto`` so is every string-like (string, categorical, boolean)
        column among the candidates. The context's fit splits them
        (:func:`adp.context.encodings.plan_columns`).

    Raises
    ------
    adp.errors.DataError
        Naming any missing column, a non-numeric one that no encoding takes (with how to
        encode it), one of a type neither numeric, categorical nor text, or when no
        feature is left.
    """
    columns = list(ddf.columns)
    encoding = context if context is not None and context.encodes else None
    named = context.encoded_columns() if context is not None else []
    missing = [c for c in [*(features or []), *key, *named] if c not in columns]
    if missing:
        raise DataError(
            f"columns {bounded(missing)} are not in the data; its columns are {bounded(columns)}"
        )
    if features is None:
        skip = set(exclude) | set(key)
        if encoding is not None:
            chosen = [c for c in columns if c not in skip or c in named]
            return _check_plan(ddf, chosen, encoding, auto_only=True)
        dtypes = ddf.dtypes  # once: each ddf.dtypes builds a new Series
        chosen = [c for c in columns if c not in skip and _is_feature_dtype(dtypes[c])]
        if not chosen:
            raise DataError(
                f"no numeric feature columns among {bounded(columns)} "
                f"(excluded: {bounded(sorted(skip))}); name them with features=[...]"
            )
        return chosen
    if not features and not named:
        raise DataError("features=[] names no columns")
    chosen = list(dict.fromkeys([*features, *named]))
    if encoding is not None:
        return _check_plan(ddf, chosen, encoding, auto_only=False)
    dtypes = ddf.dtypes
    bad = [c for c in features if not _is_feature_dtype(dtypes[c])]
    if bad:
        types = [dtypes[c] for c in bad]
        if all(is_encodable(t) for t in types):
            raise unencoded_error(bad, types)
        raise DataError(
            f"feature columns must be numeric; these are not: {bounded(bad)} "
            f"(of types {bounded([str(t) for t in types])})"
        )
    return chosen


def _check_plan(
    ddf: dd.DataFrame, chosen: list[str], context: Context, auto_only: bool
) -> list[str]:
    """The input columns of an encoding context, checked by its plan. With ``auto_only``
    (no explicit features), without ``auto`` only the numeric and named columns are
    kept; with ``auto`` every candidate is, and one of a type neither numeric,
    categorical nor text is an error naming it."""
    auto = "auto" in (context.categorical, context.text)
    named = set(context.encoded_columns())
    dtypes = ddf.dtypes
    if auto_only:
        chosen = [c for c in chosen if auto or c in named or _is_feature_dtype(dtypes[c])]
    plan_columns(context, dtypes, chosen)  # raises for a column no encoding takes
    if not chosen:
        raise DataError(
            f"no feature columns among {bounded(list(ddf.columns))}: name them with "
            "features=[...] or columns to encode in the context"
        )
    return chosen


def feature_matrix(
    part: pd.DataFrame, features: Sequence[str], where: str = "partition"
) -> np.ndarray:
    """The float64 matrix of ``features``; missing or infinite values raise, naming the column.

    Parameters
    ----------
    part : pandas.DataFrame
        One partition (or the fit sample).
    features : sequence of str
        Columns to take, in order.
    where : str
        How to name this data in errors, for example ``"partition 3"``.
    """
    # C order, as a NumPy user's matrix: some estimators (PCA's SVD with near-zero
    # eigenvalues) give different results on a Fortran-ordered copy of the same values.
    X = np.ascontiguousarray(part[list(features)].to_numpy(dtype=np.float64, na_value=np.nan))
    finite = np.isfinite(X)
    if not finite.all():
        bad_counts = (~finite).sum(axis=0)
        culprits = {f: int(n) for f, n in zip(features, bad_counts, strict=True) if n}
        raise DataError(
            f"{where}: missing or non-finite values in feature columns "
            f"{bounded_mapping(culprits)} "
            "(rows with NaN, None or inf cannot be scored; drop or impute them first)"
        )
    return X
