"""ADP: Dask-native anomaly detection.

The public API is imported lazily, so ``import adp`` stays cheap::

    import adp

    client = adp.connect()                      # a LocalCluster, or a scheduler address
    ddf = adp.read("data/lake/")                # a lazy dask DataFrame
    det = adp.create_detector("iforest", contamination=0.05).fit(ddf)
    scored = det.score(ddf, key=["sensor_id", "ts"])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "connect": "adp.cluster",
    "read": "adp.io.read",
    "create_detector": "adp.detect.detector",
    "Detector": "adp.detect.detector",
    "Contamination": "adp.detect.threshold",
    "FixedScore": "adp.detect.threshold",
    "JobSpec": "adp.jobs.spec",
    "run_job": "adp.jobs.runner",
    "settings": "adp.config",
    "profile": "adp.io.profile",
    "to_xarray": "adp.io.arrays_out",
    "search": "adp.search.api",
}

# Subpackages reachable as attributes without importing them first (``adp.models.list()``).
_SUBMODULES = ("models",)

__all__ = sorted([*_EXPORTS, *_SUBMODULES, "__version__"])

if TYPE_CHECKING:  # pragma: no cover
    from adp.cluster import connect as connect
    from adp.config import settings as settings
    from adp.detect.detector import Detector as Detector
    from adp.detect.detector import create_detector as create_detector
    from adp.detect.threshold import Contamination as Contamination
    from adp.detect.threshold import FixedScore as FixedScore
    from adp.io.arrays_out import to_xarray as to_xarray
    from adp.io.profile import profile as profile
    from adp.io.read import read as read
    from adp.jobs.runner import run_job as run_job
    from adp.jobs.spec import JobSpec as JobSpec
    from adp.search.api import search as search


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"adp.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'adp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
