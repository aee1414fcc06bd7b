"""The model registry: versions, metadata, lineage and verified loading of fitted detectors.

::

    version = adp.models.register(detector, "sensors", source="s3://lake/sensors/")
    adp.models.list()                                  # every version, as ModelVersion records
    det = adp.models.get("sensors", version="latest")  # fitted, SHA-256 verified
    adp.models.promote("sensors", version.version, "production")
    det = adp.models.load_detector("sensors@production")

Modules: :mod:`~adp.models.store` (artifacts and hashing), :mod:`~adp.models.catalog` (SQL
metadata), :mod:`~adp.models.api` (the functions above), :mod:`~adp.models.fingerprint`
(lineage fingerprints) and :mod:`~adp.models.cli` (``adp models``). Imports are lazy.
"""

from __future__ import annotations

import builtins
import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "register": ("adp.models.api", "register"),
    "list": ("adp.models.api", "list_models"),
    "get": ("adp.models.api", "get"),
    "info": ("adp.models.api", "info"),
    "promote": ("adp.models.api", "promote"),
    "load_detector": ("adp.models.api", "load_detector"),
    "parse_ref": ("adp.models.api", "parse_ref"),
    "default_registry": ("adp.models.api", "default_registry"),
    "ModelRegistry": ("adp.models.api", "ModelRegistry"),
    "ModelVersion": ("adp.models.catalog", "ModelVersion"),
    "STAGES": ("adp.models.catalog", "STAGES"),
    "fingerprint_frame": ("adp.models.fingerprint", "fingerprint_frame"),
    "fingerprint_files": ("adp.models.fingerprint", "fingerprint_files"),
    "fingerprint_source": ("adp.models.fingerprint", "fingerprint_source"),
}

__all__ = [
    "ModelRegistry",
    "ModelVersion",
    "STAGES",
    "default_registry",
    "fingerprint_files",
    "fingerprint_frame",
    "fingerprint_source",
    "get",
    "info",
    "list",
    "load_detector",
    "parse_ref",
    "promote",
    "register",
]

if TYPE_CHECKING:  # pragma: no cover
    from adp.models.api import ModelRegistry as ModelRegistry
    from adp.models.api import default_registry as default_registry
    from adp.models.api import get as get
    from adp.models.api import info as info
    from adp.models.api import list_models as list
    from adp.models.api import load_detector as load_detector
    from adp.models.api import parse_ref as parse_ref
    from adp.models.api import promote as promote
    from adp.models.api import register as register
    from adp.models.catalog import STAGES as STAGES
    from adp.models.catalog import ModelVersion as ModelVersion
    from adp.models.fingerprint import fingerprint_files as fingerprint_files
    from adp.models.fingerprint import fingerprint_frame as fingerprint_frame
    from adp.models.fingerprint import fingerprint_source as fingerprint_source


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'adp.models' has no attribute {name!r}")
    module, attr = target
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> builtins.list[str]:
    return __all__
