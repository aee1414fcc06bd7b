"""Categorical and free-text columns as numeric features, fitted once on a sample.

- a **categorical** column gives ``colour.freq`` (the share of the fit sample holding the
  row's category; 0 for a category the sample never saw) and one 0/1 column per frequent
  category, ``colour=red`` (the ``top`` most frequent ones in the sample);
- a **text** column is hashed into word counts (scikit-learn's ``HashingVectorizer``,
  nothing to fit) and projected on a ``TruncatedSVD`` fitted on the sample (a fixed
  ``random_state``): ``comment.svd0`` ... ``comment.svd{k-1}``, plus
  ``comment.svd_residual``, the share of the row's (unit-length) word vector that the
  fitted components do not explain: text unlike the sample's scores near 1.

Missing values are not left to the missing-value policy: a missing category is a category
of its own (``colour=<missing>``, with its frequency), and missing text is empty text (all
components and the residual 0). Every feature is computed from its own row only, so the
encodings are partition-invariant, and the fitted state is plain NumPy arrays and
scikit-learn objects (pickled with the model).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import HashingVectorizer

from adp.context.spec import Context
from adp.errors import DataError, bounded

__all__ = [
    "MISSING",
    "CategoricalEncoder",
    "ColumnPlan",
    "Encodings",
    "TextEncoder",
    "category_values",
    "classify",
    "fit_encodings",
    "is_encodable",
    "plan_columns",
    "type_error",
    "unencoded_error",
]

#: The category of a missing value (``colour=<missing>``).
MISSING = "<missing>"
#: Hashed word buckets of a text column (the SVD's input width).
HASH_FEATURES = 2**14
#: A string column is text (under ``auto``) when its values average this many words ...
TEXT_MIN_WORDS = 3.0
#: ... and at least this share of its non-missing sample values are distinct.
TEXT_MIN_DISTINCT = 0.2
#: ``infer_dtype`` kinds a categorical or text column may hold.
_SCALAR_KINDS = {
    "string",
    "empty",
    "integer",
    "floating",
    "mixed-integer-float",
    "mixed-integer",
    "boolean",
    "mixed",
    "categorical",
}


def is_encodable(dtype: object, numeric_too: bool = False) -> bool:
    """Whether a column of ``dtype`` can be encoded: strings (object, ``str``), pandas
    categoricals and booleans; numbers too with ``numeric_too`` (codes named explicitly)."""
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
        return True
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        return True
    numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
    return numeric_too and bool(numeric)


def type_error(column: str, kind: object) -> DataError:
    """The one-line error for a column that is neither numeric, categorical nor text."""
    return DataError(
        f"column {column!r} is of type {kind}: not numeric, categorical or text, so it "
        "cannot be a feature; exclude it (exclude=[...] or source.exclude) or derive "
        "numeric columns from it"
    )


def category_values(values: pd.Series) -> np.ndarray:
    """The row-wise category of each value, as strings (an object array): missing values
    are :data:`MISSING`, whole floats are written as integers (``3.0`` is ``"3"``, as in a
    column read as integers), everything else as ``str(value)``."""
    missing = np.asarray(values.isna().to_numpy(), dtype=bool)
    if pd.api.types.is_float_dtype(values.dtype):
        x = values.to_numpy(dtype=np.float64, na_value=np.nan)
        out = x.astype(str).astype(object)
        whole = np.isfinite(x) & (np.abs(x) < 2.0**53)
        whole[whole] = x[whole] == np.round(x[whole])
        out[whole] = x[whole].astype(np.int64).astype(str)
    else:
        out = values.astype("str").to_numpy(dtype=object, na_value=MISSING)
    out[missing] = MISSING
    return np.asarray(out, dtype=object)


def _text_values(values: pd.Series) -> list[str]:
    missing = np.asarray(values.isna().to_numpy(), dtype=bool)
    raw = values.astype(object).to_numpy(dtype=object)
    pairs = zip(raw, missing, strict=True)
    return ["" if m else (v if isinstance(v, str) else str(v)) for v, m in pairs]


def check_values(column: str, values: pd.Series) -> None:
    """Refuse, naming ``column``, values that are not scalars (lists, bytes, dates)."""
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind not in _SCALAR_KINDS:
        raise type_error(column, f"object holding {kind} values")
    if kind == "mixed":
        odd = next((v for v in values.dropna() if not pd.api.types.is_scalar(v)), None)
        if odd is not None or any(isinstance(v, bytes) for v in values.dropna()):
            shown = type(odd).__name__ if odd is not None else "bytes"
            raise type_error(column, f"object holding {shown} values")


def classify(values: pd.Series) -> str:
    """``"text"`` or ``"categorical"`` for a string column under ``auto``, from its sample:
    text when its non-missing values average at least :data:`TEXT_MIN_WORDS` words and at
    least :data:`TEXT_MIN_DISTINCT` of them are distinct; categorical otherwise."""
    present = values.dropna()
    if not len(present) or pd.api.types.infer_dtype(present) != "string":
        return "categorical"
    words = present.astype(str).str.split().str.len().mean()
    distinct = present.nunique() / len(present)
    return "text" if words >= TEXT_MIN_WORDS and distinct >= TEXT_MIN_DISTINCT else "categorical"


@dataclass(frozen=True)
class CategoricalEncoder:
    """A fitted categorical column: frequencies and one-hot categories.

    Attributes
    ----------
    column : str
        The input column.
    categories : ndarray of str
        Every category of the fit sample, sorted.
    frequency : ndarray of float64
        Each category's share of the fit sample.
    top : tuple of str
        The one-hot categories, most frequent first (ties in sorted order).
    """

    column: str
    categories: np.ndarray
    frequency: np.ndarray
    top: tuple[str, ...]

    @property
    def feature_names(self) -> list[str]:
        """``<column>.freq`` then ``<column>=<category>`` for each one-hot category."""
        return [f"{self.column}.freq", *(f"{self.column}={v}" for v in self.top)]

    def transform(self, values: pd.Series) -> dict[str, np.ndarray]:
        """The features of ``values`` (float64 arrays by name): an unseen category has
        frequency 0 and no one-hot bit."""
        known = pd.Index(self.categories)
        where = np.asarray(known.get_indexer(category_values(values)))
        freq = np.where(where >= 0, self.frequency[where], 0.0)
        out = {f"{self.column}.freq": np.asarray(freq, dtype=np.float64)}
        top = known.get_indexer(list(self.top))
        for name, code in zip(self.feature_names[1:], top, strict=True):
            out[name] = (where == code).astype(np.float64)
        return out


@dataclass(frozen=True)
class TextEncoder:
    """A fitted text column: hashed words projected on a truncated SVD.

    Attributes
    ----------
    column : str
        The input column.
    vectorizer : sklearn.feature_extraction.text.HashingVectorizer
        Words to a unit-length vector of :data:`HASH_FEATURES` buckets (stateless).
    svd : sklearn.decomposition.TruncatedSVD
        Fitted on the sample's hashed vectors.
    """

    column: str
    vectorizer: HashingVectorizer
    svd: TruncatedSVD

    @property
    def feature_names(self) -> list[str]:
        """``<column>.svd0`` ... then ``<column>.svd_residual``."""
        k = int(self.svd.components_.shape[0])
        return [*(f"{self.column}.svd{i}" for i in range(k)), f"{self.column}.svd_residual"]

    def transform(self, values: pd.Series) -> dict[str, np.ndarray]:
        """The features of ``values`` (float64 arrays by name), row by row."""
        X = self.vectorizer.transform(_text_values(values))
        Z = np.asarray(X @ self.svd.components_.T, dtype=np.float64)
        norm = np.asarray(X.multiply(X).sum(axis=1), dtype=np.float64).ravel()
        residual = np.clip(norm - (Z * Z).sum(axis=1), 0.0, 1.0)
        names = self.feature_names
        out = {name: np.ascontiguousarray(Z[:, i]) for i, name in enumerate(names[:-1])}
        out[names[-1]] = residual
        return out


def fit_categorical(column: str, values: pd.Series, top: int) -> CategoricalEncoder:
    """Fit ``column``'s frequencies and its ``top`` one-hot categories on the sample."""
    cats, counts = np.unique(category_values(values), return_counts=True)
    total = max(1, int(counts.sum()))
    order = np.lexsort((cats, -counts))  # most frequent first, ties by value
    chosen = tuple(str(c) for c in cats[order][:top])
    return CategoricalEncoder(
        column=column,
        categories=np.asarray(cats, dtype=object),
        frequency=np.asarray(counts / total, dtype=np.float64),
        top=chosen,
    )


def fit_text(column: str, values: pd.Series, components: int) -> TextEncoder:
    """Fit ``column``'s SVD (``components`` at most, fewer for a tiny sample)."""
    vectorizer = HashingVectorizer(n_features=HASH_FEATURES, alternate_sign=False, norm="l2")
    X = vectorizer.transform(_text_values(values))
    if X.nnz == 0:
        raise DataError(
            f"context.text: column {column!r} has no words in the fit sample; encode it as "
            "categorical or leave it out"
        )
    svd = TruncatedSVD(n_components=components, algorithm="randomized", random_state=0)
    with warnings.catch_warnings():  # explained-variance ratios of a degenerate sample
        warnings.simplefilter("ignore", RuntimeWarning)
        svd.fit(X)
    return TextEncoder(column=column, vectorizer=vectorizer, svd=svd)


@dataclass(frozen=True)
class Encodings:
    """The fitted encoders of a context, applied row by row.

    Attributes
    ----------
    categorical : tuple of CategoricalEncoder
    text : tuple of TextEncoder
    """

    categorical: tuple[CategoricalEncoder, ...] = ()
    text: tuple[TextEncoder, ...] = ()

    @property
    def encoders(self) -> tuple[CategoricalEncoder | TextEncoder, ...]:
        """Every encoder, categorical first."""
        return (*self.categorical, *self.text)

    @property
    def columns(self) -> list[str]:
        """The input columns, categorical first."""
        return [e.column for e in self.encoders]

    @property
    def feature_names(self) -> list[str]:
        """The features :meth:`transform` gives, in order."""
        return [n for e in self.encoders for n in e.feature_names]

    def transform(self, part: pd.DataFrame) -> dict[str, np.ndarray]:
        """The encoded features of the rows of ``part`` (float64 arrays by name)."""
        out: dict[str, np.ndarray] = {}
        for encoder in self.encoders:
            out.update(encoder.transform(part[encoder.column]))
        return out


@dataclass(frozen=True)
class ColumnPlan:
    """Which input columns a context takes as numbers, and which it encodes how.

    Attributes
    ----------
    numeric : tuple of str
        Numeric value columns (baselines and windows, or used as they are).
    categorical, text : tuple of str
        Columns named in ``context.categorical`` / ``context.text``.
    auto : tuple of str
        Other string-like columns, for ``auto``.
    auto_kind : {"categorical", "text", "classify"}
        What the ``auto`` columns become: ``classify`` (both ``auto``) decides per column
        on the sample (:func:`classify`).
    """

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    text: tuple[str, ...] = ()
    auto: tuple[str, ...] = ()
    auto_kind: str = "classify"

    @property
    def encoded(self) -> list[str]:
        """Every column the encoders read."""
        return [*self.categorical, *self.text, *self.auto]


def _is_number(dtype: object) -> bool:
    return bool(pd.api.types.is_numeric_dtype(dtype)) and not pd.api.types.is_bool_dtype(dtype)


def plan_columns(
    context: Context, dtypes: Mapping[str, object] | pd.Series, columns: Sequence[str]
) -> ColumnPlan:
    """Split the input ``columns`` (with their ``dtypes``) between numbers and encoders.

    Raises
    ------
    adp.errors.DataError
        Naming a column of a type that is neither numeric, categorical nor text, a string
        column the context does not encode, or a column named to be encoded that is
        missing or of a type that cannot be.
    """
    cat_auto, text_auto = context.categorical == "auto", context.text == "auto"
    named_cat = () if cat_auto else tuple(context.categorical)
    named_text = () if text_auto else tuple(context.text)
    absent = [c for c in (*named_cat, *named_text) if c not in columns]
    if absent:
        raise DataError(
            f"context: encoded columns {bounded(absent)} are not in the data (or are "
            "excluded, a key or not among the features)"
        )
    plan: dict[str, list[str]] = {"numeric": [], "categorical": [], "text": [], "auto": []}
    for column in columns:
        dtype = dtypes[column]
        if column in named_cat:
            if not is_encodable(dtype, numeric_too=True):
                raise type_error(column, dtype)
            plan["categorical"].append(column)
        elif column in named_text:
            if pd.api.types.is_bool_dtype(dtype) or not is_encodable(dtype):
                raise DataError(
                    f"context.text: column {column!r} is of type {dtype}; text columns "
                    "hold strings (encode it as categorical instead)"
                )
            plan["text"].append(column)
        elif _is_number(dtype):
            plan["numeric"].append(column)
        elif not is_encodable(dtype):
            raise type_error(column, dtype)
        elif cat_auto or text_auto:
            plan["auto"].append(column)
        else:
            raise unencoded_error([column], [dtype])
    kind = "classify" if cat_auto and text_auto else "categorical" if cat_auto else "text"
    return ColumnPlan(**{k: tuple(v) for k, v in plan.items()}, auto_kind=kind)


def unencoded_error(columns: Sequence[str], dtypes: Sequence[object]) -> DataError:
    """The one-line error for string-like feature columns that no encoding takes."""
    return DataError(
        f"feature columns must be numeric; these are not: {bounded(list(columns))} (of "
        f"types {bounded([str(d) for d in dtypes])}); encode them with "
        f"context={{'categorical': [{columns[0]!r}]}} (or 'text' for free text, or "
        "'auto' for every string column), or leave them out"
    )


def fit_encodings(
    sample: pd.DataFrame, plan: ColumnPlan, *, top: int, components: int
) -> Encodings:
    """Fit the encoders of ``plan`` on the sample.

    Parameters
    ----------
    sample : pandas.DataFrame
        The fit sample of the encoded columns (:func:`adp.context.sampling.sample_rows`).
    plan : ColumnPlan
        The encoded columns.
    top, components : int
        One-hot categories per categorical column; SVD components per text column.

    Raises
    ------
    adp.errors.DataError
        Naming a column holding values that are not scalars, or text without words.
    """
    categorical, text = list(plan.categorical), list(plan.text)
    for column in plan.auto:
        check_values(column, sample[column])
        kind = classify(sample[column]) if plan.auto_kind == "classify" else plan.auto_kind
        (text if kind == "text" else categorical).append(column)
    for column in plan.categorical:
        check_values(column, sample[column])
    return Encodings(
        categorical=tuple(fit_categorical(c, sample[c], top) for c in categorical),
        text=tuple(fit_text(c, sample[c], components) for c in text),
    )
