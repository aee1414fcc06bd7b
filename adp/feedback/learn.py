"""Learning from labels: a new registered model version, with its lineage.

::

    from adp.feedback import learn
    result = learn("sensors@3", ddf, method="semi_supervised")
    result.version.ref            # 'sensors@4': parent sensors@3, the label set's SHA-256

:func:`learn` loads the parent version from the registry, reads the model's labels from the
label store (the latest answer for each row; ``unsure`` ones are not targets), matches them
to the rows of ``ddf`` by key on the workers (:func:`with_labels`), fits the learned
detector of the method (:mod:`adp.feedback.detectors`) and registers it as the next version
with ``parent``, ``label_sha256`` and ``method`` (:meth:`adp.models.api.ModelRegistry.register`).
The new version scores like any registered model: ``detector: {model: sensors@4}`` in a
job spec.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from adp.errors import ConfigError, DataError, bounded
from adp.feedback.detectors import LearnedDetector, RecalibratedDetector, WeightedEnsembleDetector
from adp.feedback.keys import key_texts
from adp.feedback.labels import TARGETS, Label, label_set_sha256
from adp.feedback.semi_supervised import SemiSupervisedDetector

#: The learned detectors by lineage method.
METHODS: dict[str, type[LearnedDetector]] = {
    "threshold": RecalibratedDetector,
    "semi_supervised": SemiSupervisedDetector,
    "ensemble_weights": WeightedEnsembleDetector,
}


def _label_column(
    part: pd.DataFrame, key: list[str], targets: dict[str, int], column: str
) -> pd.DataFrame:
    out = part.copy()
    texts = key_texts(part, key)
    out[column] = texts.map(targets).astype(np.float64) if len(part) else np.empty(0)
    return out


def key_columns(labels: Iterable[Label]) -> list[str]:
    """The key columns the labels name (the keys of their key texts).

    Raises
    ------
    adp.errors.DataError
        When labels name different key columns (they come from differently keyed outputs).
    """
    found: list[str] | None = None
    for lab in labels:
        columns = list(json.loads(lab.row_key))
        if found is None:
            found = columns
        elif columns != found:
            raise DataError(
                f"the labels name different key columns ({found} and {columns}): learn from "
                "the labels of one keyed output; pass key=[...] to choose"
            )
    if found is None:
        raise DataError("there are no labels to learn from: label rows first (adp review label)")
    return found


def with_labels(
    ddf: dd.DataFrame,
    labels: Iterable[Label],
    key: Sequence[str] | None = None,
    column: str = "label",
) -> dd.DataFrame:
    """``ddf`` with a label column from analysts' labels, matched by key on the workers.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        The rows, with the key columns.
    labels : iterable of Label
        The labels (latest answers); ``unsure`` ones leave their row unlabelled.
    key : sequence of str, optional
        The key columns; default the ones the labels name.
    column : str
        The new column: 1.0 (anomaly), 0.0 (normal), NaN (unlabelled).

    Returns
    -------
    dask.dataframe.DataFrame
        Lazily; the labels travel to the workers once.
    """
    labels = list(labels)
    key = list(key) if key is not None else key_columns(labels)
    absent = [c for c in key if c not in ddf.columns]
    if absent:
        raise DataError(
            f"the data lacks the key columns {absent} the labels are keyed by; its columns "
            f"are {bounded(ddf.columns)}"
        )
    if column in ddf.columns:
        raise DataError(f"the data already has a {column!r} column: choose another label column")
    targets = {lab.row_key: TARGETS[lab.label] for lab in labels if lab.label in TARGETS}
    meta = ddf._meta.copy()
    meta[column] = np.empty(0, dtype=np.float64)
    shipped = dask.delayed(targets, pure=True)
    return ddf.map_partitions(_label_column, key, shipped, column, meta=meta)


@dataclass(frozen=True)
class LearnResult:
    """What :func:`learn` made.

    Attributes
    ----------
    detector : LearnedDetector
        Fitted.
    version : ModelVersion or None
        The registered version (``None`` with ``register=False``).
    label_sha256 : str
        The SHA-256 of the label set used (:func:`adp.feedback.labels.label_set_sha256`).
    counts : dict
        ``anomalies`` and ``normals`` learned from, ``labels`` given and ``unmatched``
        (labels whose row was not in the data).
    """

    detector: LearnedDetector
    version: Any
    label_sha256: str
    counts: dict[str, int] = field(default_factory=dict)


def learn(
    model: str,
    ddf: dd.DataFrame,
    method: str = "semi_supervised",
    *,
    key: Sequence[str] | None = None,
    labels: Iterable[Label] | None = None,
    store: Any = None,
    registry: Any = None,
    name: str | None = None,
    register: bool = True,
    **params: Any,
) -> LearnResult:
    """Learn a new model version from the labels of ``model``.

    Parameters
    ----------
    model : str
        The parent, ``name@version`` (``name`` alone: the latest version).
    ddf : dask.dataframe.DataFrame
        Rows with the key columns and the parent's features (the data it scored).
    method : {"threshold", "semi_supervised", "ensemble_weights"}
        See :mod:`adp.feedback.detectors`.
    key : sequence of str, optional
        The key columns; default the ones the labels name.
    labels : iterable of Label, optional
        The labels to learn from; default the model name's latest labels in ``store``.
    store : LabelStore, optional
        Default the configured one.
    registry : ModelRegistry, optional
        Default the configured one.
    name : str, optional
        The name to register under; default the parent's (a new version of it).
    register : bool
        Register the learned detector (else only fit it).
    **params
        The learned detector's parameters (``target_precision``, ``max_iter``, ...);
        ``contamination`` defaults to the parent's.

    Returns
    -------
    LearnResult

    Raises
    ------
    adp.errors.ConfigError
        For an unknown method or parameter.
    adp.errors.ModelNotFoundError
        For an unknown parent.
    adp.errors.DetectorError, adp.errors.DataError
        When the labels cannot train the method (one class only, no row matched).
    """
    from adp.models.api import default_registry, parse_ref

    if method not in METHODS:
        raise ConfigError(f"unknown learning method {method!r}; use one of {', '.join(METHODS)}")
    registry = registry if registry is not None else default_registry()
    parent_name, parent_version = parse_ref(model)
    record = registry.info(parent_name, parent_version)
    parent = registry.get(record.name, record.version)
    if labels is None:
        from adp.feedback.labels import LabelStore

        owned = store is None
        store = store if store is not None else LabelStore()
        try:
            labels = store.labels(record.name)
        finally:
            if owned:
                store.close()
    used = [lab for lab in labels if lab.label in TARGETS]
    cls = METHODS[method]
    factory: Any = cls
    params.setdefault("contamination", parent.contamination)
    try:
        detector: LearnedDetector = factory(parent, **params)
    except TypeError as exc:
        raise ConfigError(f"invalid parameters for method {method!r}: {exc}") from None
    labelled = with_labels(ddf, used, key)
    detector.fit(labelled)
    matched = detector.n_anomalies_ + detector.n_normals_
    counts = {
        "labels": len(used),
        "anomalies": int(detector.n_anomalies_),
        "normals": int(detector.n_normals_),
        "unmatched": max(0, len(used) - matched),
        "unlabelled_rows": int(detector.n_unlabelled_),
    }
    digest = label_set_sha256(used)
    version = None
    if register:
        version = registry.register(
            detector,
            name or record.name,
            {"learned_from": counts},
            source=record.source,
            fingerprint=record.fingerprint,
            parent=record.ref,
            label_sha256=digest,
            method=cls.method,
        )
    return LearnResult(detector, version, digest, counts)


__all__ = ["METHODS", "LearnResult", "key_columns", "learn", "with_labels"]
