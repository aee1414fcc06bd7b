"""Context-aware features: per-entity seasonal baselines and trailing windows.

- :class:`~adp.context.spec.Context`: what to compute (``by``, ``time``, ``window``,
  ``season``, ``normalise``); give it to a detector, ``create_detector("iforest",
  context={"by": "sensor_id", "time": "ts", "season": "1d"})``, or a job spec's
  ``context:`` section (:class:`~adp.context.section.ContextSpec`);
- :func:`~adp.context.fitted.fit_context` and
  :class:`~adp.context.fitted.FittedContext`: the fitted baselines (a detector's
  ``context_``) and the partition-invariant transform that adds the features.

Names are imported on first use, so reading a job spec does not import dask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adp.lazy import lazy_exports

__all__ = ["Context", "ContextSpec", "FittedContext", "fit_context"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Context": "adp.context.spec",
        "ContextSpec": "adp.context.section",
        "FittedContext": "adp.context.fitted",
        "fit_context": "adp.context.fitted",
    },
)

if TYPE_CHECKING:  # pragma: no cover
    from adp.context.fitted import FittedContext as FittedContext
    from adp.context.fitted import fit_context as fit_context
    from adp.context.section import ContextSpec as ContextSpec
    from adp.context.spec import Context as Context
