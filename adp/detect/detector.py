"""Detectors by name: :func:`create_detector`, and the public detector classes.

- :class:`~adp.detect.base.BaseDetector`: the estimator contract and the shared fit /
  detect machinery (:mod:`adp.detect.base`);
- :class:`~adp.detect.single.Detector`: one registered estimator;
- :class:`~adp.detect.ensemble.EnsembleDetector`: several, their scores combined.

Scoring runs through :func:`adp.detect.detection.run_detection`, the one score path that
notebooks, jobs and streams share.
"""

from __future__ import annotations

import inspect
from typing import Any

from adp.detect.base import STRATEGIES, BaseDetector
from adp.detect.ensemble import EnsembleDetector
from adp.detect.registry import detector_info
from adp.detect.single import Detector
from adp.detect.threshold import check_contamination
from adp.errors import DetectorError

__all__ = [
    "STRATEGIES",
    "BaseDetector",
    "Detector",
    "EnsembleDetector",
    "check_contamination",
    "create_detector",
]


def create_detector(name: str, **params: Any) -> BaseDetector:
    """Create a detector by name, checking the name and parameters at once.

    Parameters
    ----------
    name : str
        A registered name or alias, such as ``"isolation_forest"`` (``"iforest"``),
        ``"ecod"``, ``"copod"``, ``"hbos"``, ``"lof"``, ``"knn"``, ``"one_class_svm"``
        (``"ocsvm"``) or ``"pca"``; ``adp detectors`` lists them all. ``"ensemble"``
        combines several (see :class:`adp.detect.ensemble.EnsembleDetector`).
    **params
        The detector's parameters; ``contamination`` (default 0.1, or ``"auto"``) is
        accepted by all.

    Returns
    -------
    BaseDetector
        An unfitted :class:`Detector` (its ``name`` the canonical one) or
        :class:`EnsembleDetector`.

    Raises
    ------
    adp.errors.DetectorError
        For an unknown name or parameter, listing the valid ones, or a bad value.

    Examples
    --------
    >>> det = adp.create_detector("iforest", n_estimators=200, random_state=0)
    >>> det.name
    'isolation_forest'
    >>> ens = adp.create_detector("ensemble", detectors=["ecod", "iforest"], combination="max")
    """
    detector: BaseDetector
    if str(name).lower() == "ensemble":
        valid = list(inspect.signature(EnsembleDetector).parameters)
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise DetectorError(
                f"unknown parameters {unknown} for detector 'ensemble'; "
                f"valid parameters: {', '.join(valid)}"
            )
        if "detectors" not in params:
            raise DetectorError(
                "an ensemble needs its members: create_detector('ensemble', "
                "detectors=[...]); detectors is required"
            )
        detector = EnsembleDetector(**params)
    else:
        detector = Detector(detector_info(name).name, **params)
    detector._validate()
    return detector
