"""The model registry: versions, metadata, lineage and verified loading of fitted detectors.

::

    version = adp.models.register(detector, "sensors", source="s3://lake/sensors/")
    adp.models.list()                                  # every version, as ModelVersion records
    det = adp.models.get("sensors", version="latest")  # fitted, SHA-256 verified
    adp.models.promote("sensors", version.version, "production")
    det = adp.models.load_detector("sensors@production")

Modules: :mod:`~adp.models.store` (artifacts and hashing), :mod:`~adp.models.metadata` (SQL
metadata), :mod:`~adp.models.api` (the functions above), :mod:`~adp.models.fingerprint`
(lineage fingerprints) and :mod:`~adp.models.cli` (``adp models``). Imports are lazy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adp.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "register": "adp.models.api",
        "list": "adp.models.api:list_models",
        "get": "adp.models.api",
        "info": "adp.models.api",
        "promote": "adp.models.api",
        "load_detector": "adp.models.api",
        "parse_ref": "adp.models.api",
        "default_registry": "adp.models.api",
        "ModelRegistry": "adp.models.api",
        "ModelVersion": "adp.models.metadata",
        "STAGES": "adp.models.metadata",
        "fingerprint_frame": "adp.models.fingerprint",
        "fingerprint_files": "adp.models.fingerprint",
        "fingerprint_source": "adp.models.fingerprint",
    },
)

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
    from adp.models.fingerprint import fingerprint_files as fingerprint_files
    from adp.models.fingerprint import fingerprint_frame as fingerprint_frame
    from adp.models.fingerprint import fingerprint_source as fingerprint_source
    from adp.models.metadata import STAGES as STAGES
    from adp.models.metadata import ModelVersion as ModelVersion
