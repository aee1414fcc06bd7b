"""Detectors by name: ``create_detector("isolation_forest", n_estimators=200)``.

Names are lower-case and stable. Each entry (:class:`~adp.detect.entry.DetectorInfo`) says
which estimator class implements it, how a fitted estimator becomes a partition-invariant
:class:`~adp.detect.scorers.Scorer`, and what it costs. :mod:`adp.detect.catalog` lists the
entries and this module registers them; ``adp detectors`` lists them all.
"""

from __future__ import annotations

from adp.detect.catalog import ENTRIES
from adp.detect.entry import DetectorInfo
from adp.errors import DetectorError

_DETECTORS: dict[str, DetectorInfo] = {}
_ALIASES: dict[str, str] = {}


def register(info: DetectorInfo) -> DetectorInfo:
    """Add ``info`` to the registry under its name and aliases."""
    for name in (info.name, *info.aliases):
        if name != name.lower():
            raise DetectorError(f"detector names are lower-case: {name!r}")
    _DETECTORS[info.name] = info
    for alias in info.aliases:
        _ALIASES[alias] = info.name
    return info


def available() -> list[str]:
    """Sorted canonical names of every registered detector."""
    return sorted(_DETECTORS)


def detector_info(name: str) -> DetectorInfo:
    """Look up a detector by name or alias.

    Raises
    ------
    adp.errors.DetectorError
        For an unknown name, listing the valid ones.
    """
    key = str(name).lower()
    key = _ALIASES.get(key, key)
    try:
        return _DETECTORS[key]
    except KeyError:
        raise DetectorError(
            f"unknown detector {name!r}; valid names: {', '.join(available())} "
            f"(aliases: {', '.join(sorted(_ALIASES))})"
        ) from None


def all_detectors() -> list[DetectorInfo]:
    """Every registry entry, sorted by name."""
    return [_DETECTORS[name] for name in available()]


for _info in ENTRIES:
    register(_info)

__all__ = [
    "DetectorInfo",
    "all_detectors",
    "available",
    "detector_info",
    "register",
]
