"""The one validator of a contamination share, kept free of heavy imports: job specs are
checked with it in the processes that only submit them (``adp submit``, the service's
API), where importing the thresholds' dask code would cost seconds."""

from __future__ import annotations

import numbers
from typing import Literal

from adp.errors import DetectorError

__all__ = ["check_contamination"]


def check_contamination(value: object, field: str = "contamination") -> float | Literal["auto"]:
    """Check a contamination: a share of rows in ``(0, 0.5]``, or ``"auto"``.

    The one validator of the concept: detectors, ensembles, thresholds, searches and job
    specs all call it.

    Parameters
    ----------
    value : float or str
        The value to check; ``"auto"`` in any case and with surrounding spaces is accepted.
    field : str
        The name of the field, as the error message should call it (for example
        ``"threshold.contamination"``).

    Returns
    -------
    float or "auto"
        The share as a float, or ``"auto"``.

    Raises
    ------
    adp.errors.DetectorError
        For anything else (a ``ValueError``), naming ``field``.
    """
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return "auto"
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        share = float(value)
        if 0 < share <= 0.5:
            return share
    raise DetectorError(f"{field} must be a number in (0, 0.5] or 'auto', got {value!r}")
