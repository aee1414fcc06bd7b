"""Choosing and checking the feature columns a detector uses."""

from __future__ import annotations

from collections.abc import Sequence

import dask.dataframe as dd
import numpy as np
import pandas as pd

from adp.errors import DataError, bounded, bounded_mapping


def _is_feature_dtype(dtype: object) -> bool:
    return bool(pd.api.types.is_numeric_dtype(dtype)) and not pd.api.types.is_bool_dtype(dtype)


def resolve_features(
    ddf: dd.DataFrame,
    features: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    key: Sequence[str] = (),
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

    Raises
    ------
    adp.errors.DataError
        Naming any missing or non-numeric column, or when no feature is left.
    """
    columns = list(ddf.columns)
    missing = [c for c in [*(features or []), *key] if c not in columns]
    if missing:
        raise DataError(
            f"columns {bounded(missing)} are not in the data; its columns are {bounded(columns)}"
        )
    if features is None:
        skip = set(exclude) | set(key)
        chosen = [c for c in columns if c not in skip and _is_feature_dtype(ddf.dtypes[c])]
        if not chosen:
            raise DataError(
                f"no numeric feature columns among {bounded(columns)} "
                f"(excluded: {bounded(sorted(skip))}); name them with features=[...]"
            )
        return chosen
    bad = [c for c in features if not _is_feature_dtype(ddf.dtypes[c])]
    if bad:
        types = [str(ddf.dtypes[c]) for c in bad]
        raise DataError(
            f"feature columns must be numeric; these are not: {bounded(bad)} "
            f"(of types {bounded(types)})"
        )
    if not features:
        raise DataError("features=[] names no columns")
    return list(features)


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
