"""ADP: Dask-native anomaly detection.

The public API is imported lazily, so ``import adp`` stays cheap::

    import adp

    client = adp.connect()                      # a LocalCluster, or a scheduler address
    ddf = adp.read("data/lake/")                # a lazy dask DataFrame
    det = adp.create_detector("iforest", contamination=0.05).fit(ddf)
    scored = det.detect(ddf, key=["sensor_id", "ts"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adp.lazy import lazy_exports

__version__ = "0.1.0"

__all__ = [
    "BaseDetector",
    "Contamination",
    "Context",
    "Detector",
    "EnsembleDetector",
    "FixedScore",
    "JobSpec",
    "__version__",
    "connect",
    "create_detector",
    "models",
    "profile",
    "read",
    "run_job",
    "search",
    "settings",
    "stream",
    "to_xarray",
]

__getattr__, _dir = lazy_exports(
    __name__,
    {
        "connect": "adp.cluster.connect",
        "read": "adp.io.read",
        "create_detector": "adp.detect.detector",
        "Context": "adp.context.spec",
        "Detector": "adp.detect.detector",
        "BaseDetector": "adp.detect.detector",
        "EnsembleDetector": "adp.detect.detector",
        "Contamination": "adp.detect.threshold",
        "FixedScore": "adp.detect.threshold",
        "JobSpec": "adp.jobs.spec",
        "run_job": "adp.jobs.runner",
        "settings": "adp.config",
        "profile": "adp.io.profile",
        "to_xarray": "adp.io.arrays_out",
        "search": "adp.tuning.api",
        # a subpackage reachable as an attribute without importing it first
        "models": "adp.models:",
        "stream": "adp.stream:",
    },
)


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from adp.cluster.connect import connect as connect
    from adp.config import settings as settings
    from adp.context.spec import Context as Context
    from adp.detect.detector import BaseDetector as BaseDetector
    from adp.detect.detector import Detector as Detector
    from adp.detect.detector import EnsembleDetector as EnsembleDetector
    from adp.detect.detector import create_detector as create_detector
    from adp.detect.threshold import Contamination as Contamination
    from adp.detect.threshold import FixedScore as FixedScore
    from adp.io.arrays_out import to_xarray as to_xarray
    from adp.io.profile import profile as profile
    from adp.io.read import read as read
    from adp.jobs.runner import run_job as run_job
    from adp.jobs.spec import JobSpec as JobSpec
    from adp.tuning.api import search as search
