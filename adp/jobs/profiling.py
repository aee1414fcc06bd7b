"""A job's data profile and quality gate, computed in the pass that draws the fit sample.

:class:`JobProfile` hands :meth:`adp.detect.base.BaseDetector.fit` an
:class:`~adp.detect.inspection.Inspection` that summarises every partition as it is read for
the sample and, before the model is fitted, merges the summaries into the source's
:class:`~adp.io.profile.DataProfile` and puts it to the quality gate. A job whose model is
already fitted (a registered one) profiles in a pass of its own (:meth:`JobProfile.apart`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask.dataframe as dd

from adp.detect.inspection import Inspection, inspect_apart
from adp.io.profile import DataProfile, profile_from, summarise_partition

__all__ = ["JobProfile"]


class JobProfile:
    """The profile of a job's source frame, filled in while the job fits.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        The job's source frame, as opened.
    source : str
        Its URI (a Parquet lake's footers are compared).
    storage_options : dict, optional
        fsspec options for a remote source.
    gate : callable, optional
        The quality gate: called with the profile, raises to refuse the job.
    """

    def __init__(
        self,
        ddf: dd.DataFrame,
        source: str,
        storage_options: dict[str, Any] | None = None,
        gate: Callable[[DataProfile], None] | None = None,
    ) -> None:
        self.ddf = ddf
        self.source = source
        self.storage_options = storage_options
        self.gate = gate
        self.profile: DataProfile | None = None

    def _conclude(self, summaries: list[dict[str, Any]]) -> None:
        self.profile = profile_from(
            self.ddf._meta, summaries, source=self.source, storage_options=self.storage_options
        )
        if self.gate is not None:
            self.gate(self.profile)

    def inspection(self) -> Inspection:
        """What ``fit(..., inspect=...)`` runs: fills :attr:`profile` and applies the gate."""
        return Inspection(summarise_partition, self._conclude)

    def apart(self) -> None:
        """Profile (and gate) in a pass of its own, for a job that fits nothing."""
        inspect_apart(self.ddf, self.inspection())
