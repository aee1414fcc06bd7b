"""The missing-value policy, applied the same way when fitting and when scoring.

``fail`` (the default) stops at the first partition with a missing (NaN, None) or
non-finite (inf) value in a feature column, naming the partition, the column and the count.
``drop`` leaves such rows out (they get no score). ``impute_median`` replaces them with
each column's median, computed once on the workers at fit time and reused at score time, so
a row is filled the same way whichever run scores it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import dask.dataframe as dd
import numpy as np
import pandas as pd

from adp.errors import ConfigError, DataError, bounded

MissingPolicy = Literal["fail", "drop", "impute_median"]
POLICIES: tuple[str, ...] = ("fail", "drop", "impute_median")


def _bad(part: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    values = part[features].to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.DataFrame(~np.isfinite(values), columns=features, index=part.index)


def _fail_partition(
    part: pd.DataFrame, features: list[str], partition_info: dict[str, Any] | None = None
) -> pd.DataFrame:
    if not len(part):
        return part
    bad = _bad(part, features)
    counts = bad.sum()
    if counts.any():
        number = partition_info["number"] if partition_info else "?"
        culprits = dict(list({str(c): int(n) for c, n in counts.items() if n}.items())[:10])
        first = bad.any(axis=1).idxmax()
        raise DataError(
            f"partition {number}: missing or non-finite values in feature columns {culprits} "
            f"(first at index {first!r}); set source.missing to 'drop' or 'impute_median', or "
            "clean the data"
        )
    return part


def _drop_partition(part: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    if not len(part):
        return part
    return part[~_bad(part, features).any(axis=1).to_numpy()]


def _impute_partition(
    part: pd.DataFrame, features: list[str], medians: dict[str, float]
) -> pd.DataFrame:
    if not len(part):
        return part
    bad = _bad(part, features)
    floats = all(pd.api.types.is_float_dtype(part[name].dtype) for name in features)
    if floats and not bad.to_numpy().any():
        return part
    out = part.copy()
    for name in features:
        column = out[name].astype(np.float64).to_numpy(copy=True, na_value=np.nan)
        column[bad[name].to_numpy()] = medians[name]
        out[name] = column
    return out


def policy_partition(
    part: pd.DataFrame,
    number: int,
    *,
    features: Sequence[str],
    policy: MissingPolicy,
    medians: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """The feature columns of one pandas partition under ``policy``: what
    :func:`apply_missing_policy` maps over a frame, for the partition numbered ``number``.

    ``medians`` are required for ``impute_median`` (from :func:`apply_missing_policy`).
    """
    chosen = list(features)
    columns = part[chosen]
    if policy == "fail":
        return _fail_partition(columns, chosen, {"number": number})
    if policy == "drop":
        return _drop_partition(columns, chosen)
    if medians is None:
        raise ConfigError("impute_median needs the fit-time medians")
    return _impute_partition(columns, chosen, {c: float(medians[c]) for c in chosen})


def _check_features(ddf: dd.DataFrame, features: Sequence[str]) -> list[str]:
    features = list(features)
    missing = [c for c in features if c not in ddf.columns]
    if missing:
        raise DataError(
            f"feature columns {bounded(missing)} are not in the data; its columns are "
            f"{bounded(ddf.columns)}"
        )
    dtypes = ddf.dtypes  # once: each ddf.dtypes builds a new Series
    bad = {
        c: str(dtypes[c])
        for c in features
        if not pd.api.types.is_numeric_dtype(dtypes[c]) or pd.api.types.is_bool_dtype(dtypes[c])
    }
    if bad:
        shown = dict(list(bad.items())[:10])
        more = f" ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise DataError(f"feature columns must be numeric; these are not: {shown}{more}")
    return features


def compute_medians(ddf: dd.DataFrame, features: Sequence[str]) -> dict[str, float]:
    """Each feature's median over its finite values, computed on the workers (dask's
    approximate quantile, one pass).

    Raises
    ------
    adp.errors.DataError
        Naming the columns with no finite value at all.
    """
    features = list(features)
    finite = ddf[features].astype(np.float64).replace([np.inf, -np.inf], np.nan)
    medians = finite.quantile(0.5).compute()
    empty = [c for c in features if not np.isfinite(medians[c])]
    if empty:
        raise DataError(
            f"feature columns {bounded(empty)} have no finite value at all: nothing to impute "
            "from; drop them from features"
        )
    return {c: float(medians[c]) for c in features}


def apply_missing_policy(
    ddf: dd.DataFrame,
    features: Sequence[str],
    policy: MissingPolicy = "fail",
    *,
    medians: Mapping[str, float] | None = None,
) -> tuple[dd.DataFrame, dict[str, float] | None]:
    """Apply the missing-value ``policy`` to the feature columns of ``ddf``, lazily.

    Call it before fitting and again before scoring, passing the medians the first call
    returned, so that both see the same data.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        The data.
    features : sequence of str
        The numeric feature columns the policy applies to.
    policy : {"fail", "drop", "impute_median"}
        See the module docstring.
    medians : mapping, optional
        For ``impute_median``: medians from the fit-time call. Computed (one pass on the
        workers) when omitted.

    Returns
    -------
    ddf : dask.dataframe.DataFrame
        Same partitions and divisions; checked (``fail``), filtered (``drop``) or filled.
    medians : dict or None
        The medians used by ``impute_median`` (store them with the model), else None.

    Raises
    ------
    adp.errors.ConfigError
        An unknown policy, or medians lacking a feature.
    adp.errors.DataError
        A missing or non-numeric feature column; with ``fail``, when computed, the first
        partition with missing values (naming it, the columns and the counts).
    """
    if policy not in POLICIES:
        raise ConfigError(f"missing policy {policy!r} is not one of {list(POLICIES)}")
    features = _check_features(ddf, features)
    if policy == "fail":
        return ddf.map_partitions(_fail_partition, features, meta=ddf._meta), None
    if policy == "drop":
        return ddf.map_partitions(_drop_partition, features, meta=ddf._meta), None
    if medians is None:
        medians = compute_medians(ddf, features)
    lacking = [c for c in features if c not in medians]
    if lacking:
        raise ConfigError(
            f"medians given for impute_median lack feature columns {bounded(lacking)}"
        )
    used = {c: float(medians[c]) for c in features}
    meta = ddf._meta.copy()
    for name in features:
        if not pd.api.types.is_float_dtype(meta[name].dtype):
            meta[name] = meta[name].astype(np.float64)
    return ddf.map_partitions(_impute_partition, features, used, meta=meta), used
