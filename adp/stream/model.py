"""The stream's model: a registered version or one fitted by the spec, and its calibration.

:func:`resolve_model` loads ``model: name@version`` from the registry (verified before it is
deserialized) or fits ``fit.detector`` on ``fit.source`` with the normal estimator
(:func:`adp.create_detector` ``(...).fit(ddf)``), on the cluster. When a batch source is
at hand (``threshold.source``, else the fit source) it scores it with the batch path and
keeps two small results: the exact global threshold of the contamination (what a batch job
over that source flags with) and a uniform sample of its scores (the reference that
adaptive thresholds start from and drift is measured against).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from adp.detect.contamination import check_contamination
from adp.detect.detection import raw_scores, shared_partitions
from adp.detect.detector import BaseDetector, create_detector
from adp.detect.threshold import from_spec
from adp.errors import SpecError, bounded
from adp.io.read import read
from adp.redact import redact_url
from adp.stream.context_features import check_streamable, stream_inputs
from adp.stream.spec import BatchSourceSpec, StreamSpec
from adp.stream.thresholds import (
    FixedThreshold,
    RollingQuantile,
    SpotThreshold,
    StreamThreshold,
)

__all__ = ["StreamModel", "build_threshold", "calibrate", "resolve_model"]


@dataclass
class StreamModel:
    """A fitted detector and what the stream knows about its scores.

    Attributes
    ----------
    detector : BaseDetector
        Fitted.
    ref : str
        ``name@version`` for a registered model, ``fit:<detector>`` for one fitted by the
        spec.
    model_id : str
        The fit's id (``detector.model_id_``).
    threshold : float or None
        The fitted global threshold, when known (calibrated, or the registered version's
        ``metadata["threshold"]``).
    reference : ndarray or None
        A uniform sample of the calibration source's scores.
    calibrated_on : str or None
        The calibration source (password hidden).
    """

    detector: BaseDetector
    ref: str
    model_id: str
    threshold: float | None = None
    reference: np.ndarray | None = None
    calibrated_on: str | None = None

    def audit_details(self) -> dict[str, Any]:
        """What audit records say about the model."""
        return {
            "model": self.ref,
            "model_id": self.model_id,
            "detector": self.detector.name,
            "features": list(self.detector.features_),
            "calibrated_on": self.calibrated_on,
        }


def _open(source: BatchSourceSpec) -> dd.DataFrame:
    options = dict(source.options)
    if source.storage_options is not None:
        options["storage_options"] = source.storage_options
    return read(source.uri, source.format, **options)


def _take(scores: pd.Series, k: int, seed: int) -> pd.Series:
    return scores.sample(min(len(scores), k), random_state=seed) if len(scores) else scores


def calibrate(
    detector: BaseDetector,
    ddf: dd.DataFrame,
    contamination: float | str | None = None,
    reference_size: int = 10_000,
) -> tuple[float, np.ndarray]:
    """Score ``ddf`` with the batch path; return its global threshold and a score sample.

    Parameters
    ----------
    detector : BaseDetector
        Fitted.
    ddf : dask.dataframe.DataFrame
        The calibration data, with the detector's feature columns.
    contamination : float, "auto" or None
        The share to flag; ``None``: the detector's own (as a batch job's default).
    reference_size : int
        At most this many scores are returned (an even share from each partition).

    Returns
    -------
    threshold : float
        Exactly the threshold :meth:`~adp.detect.base.BaseDetector.detect` flags ``ddf``
        with.
    reference : ndarray
        Float64 scores, a uniform sample within each partition.
    """
    scored = shared_partitions(raw_scores(detector, detector.prepare(ddf)))
    # a number is a share here, not a score (threshold_rule reads a number as a score)
    rule = (
        detector.threshold_rule()
        if contamination is None
        else from_spec(contamination=check_contamination(contamination))
    )
    per_part = max(1, math.ceil(reference_size / max(1, scored.npartitions)))
    take = dask.delayed(_take, pure=True)
    # delayed objects on the same partition keys as the threshold's passes: scored once
    sample = [take(part, per_part, 0) for part in scored["score"].to_delayed()]
    value, parts = dask.compute(rule.resolve(scored["score"]), sample)
    arrays = [np.asarray(p, dtype=np.float64) for p in parts]
    reference = np.concatenate(arrays) if arrays else np.empty(0, dtype=np.float64)
    return float(value), reference[:reference_size]


def _registered(ref: str) -> tuple[BaseDetector, str, float | None]:
    from adp.models.api import default_registry

    registry = default_registry()
    record = registry.info(ref)
    detector = registry.get(record.name, record.version)
    stored = record.metadata.get("threshold")
    threshold: float | None = None
    if isinstance(stored, numbers.Real) and not isinstance(stored, bool):
        threshold = float(stored) if math.isfinite(float(stored)) else None
    return detector, record.ref, threshold


def _fitted(spec: StreamSpec) -> BaseDetector:
    assert spec.fit is not None
    fit = spec.fit
    ddf = _open(fit.source)
    detector = create_detector(fit.detector.name, **fit.detector.params)
    return detector.fit(
        ddf,
        features=fit.source.features,
        sample_rows=fit.sample_rows,
        random_state=fit.random_state,
        exclude=fit.source.exclude,
        key=fit.source.key,
        missing=fit.missing,
    )


def _check_features(spec: StreamSpec, detector: BaseDetector, ref: str) -> None:
    check_streamable(detector, ref, windows=spec.window is not None)
    fitted = stream_inputs(detector)[0]  # a context model reads its value columns
    if spec.features is not None and set(spec.features) != set(fitted):
        raise SpecError(
            f"features: {bounded(spec.features)} are not the model's features "
            f"{bounded(fitted)}: list those, or leave 'features' out"
        )
    clash = sorted(set(spec.key) & set(fitted))
    if clash:
        raise SpecError(f"key: {bounded(clash)} are feature columns; a key identifies events")


def resolve_model(spec: StreamSpec) -> StreamModel:
    """Load or fit the stream's model and calibrate it when a batch source is at hand.

    Runs on the current dask client (fitting and calibration are cluster work).

    Raises
    ------
    adp.errors.SpecError
        When the threshold or drift needs training scores and no batch source gives
        them, or ``features`` / ``key`` contradict the model.
    adp.errors.ModelNotFoundError, adp.errors.ModelIntegrityError
        For a registered model that is missing or does not verify.
    """
    from adp.config import settings

    stored: float | None = None
    if spec.model is not None:
        detector, ref, stored = _registered(spec.model)
    else:
        detector = _fitted(spec)
        ref = f"fit:{detector.name}"
    _check_features(spec, detector, ref)
    model = StreamModel(detector, ref, str(detector.model_id_), threshold=stored)
    source = spec.threshold.source or (spec.fit.source if spec.fit else None)
    if source is None:
        if spec.threshold.kind == "fitted" and stored is None:
            raise SpecError(
                f"threshold: kind 'fitted' needs the scores of a batch source, and model "
                f"{ref} records no threshold: give threshold.source (data like the "
                "training data), or kind 'fixed' with a score"
            )
        if spec.drift is not None:
            raise SpecError(
                "drift: needs training scores to compare with: give threshold.source (data "
                "like the training data) or fit the model in the spec"
            )
        return model
    reference_size = max(settings().stream.reference_scores, spec.threshold.window)
    threshold, reference = calibrate(
        detector, _open(source), spec.threshold.contamination, reference_size
    )
    model.threshold, model.reference = threshold, reference
    model.calibrated_on = redact_url(source.uri)
    return model


def build_threshold(spec: StreamSpec, model: StreamModel) -> StreamThreshold:
    """The spec's threshold, started from the model's fitted threshold and reference."""
    t = spec.threshold
    if t.kind == "fixed":
        assert t.score is not None
        return FixedThreshold(t.score, "fixed")
    if t.kind == "fitted":
        assert model.threshold is not None  # resolve_model refused otherwise
        return FixedThreshold(model.threshold, "fitted")
    assert t.q is not None
    if t.kind == "quantile":
        return RollingQuantile(t.q, t.window, t.warmup, model.reference)
    return SpotThreshold(t.q, t.level, t.window, t.warmup, model.reference)
