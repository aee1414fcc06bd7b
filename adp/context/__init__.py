"""Context-aware features: per-entity seasonal baselines and trailing windows, and
encodings of categorical and free-text columns.

- :class:`~adp.context.spec.Context`: what to compute (``by``, ``time``, ``window``,
  ``season``, ``normalise``; ``categorical``, ``text``); give it to a detector,
  ``create_detector("iforest", context={"by": "sensor_id", "time": "ts", "season":
  "1d"})`` or ``create_detector("iforest", context={"categorical": ["colour"], "text":
  ["comment"]})``, or a job spec's ``context:`` section
  (:class:`~adp.context.section.ContextSpec`);
- :func:`~adp.context.fitted.fit_context` and
  :class:`~adp.context.fitted.FittedContext`: the fitted baselines and encoders (a
  detector's ``context_``) and the partition-invariant transform that adds the features;
- :mod:`adp.context.encodings`: the categorical (frequency, one-hot) and text (hashing
  vectoriser, truncated SVD) encoders, fitted on a sample (:mod:`adp.context.sampling`);
- :mod:`adp.context.stl`: STL seasonal baselines (``season: {period: 1d, method: stl}``);
- :mod:`adp.context.discords`: matrix-profile discords with STUMPY for long univariate
  series: :func:`~adp.context.discords.discord_scores` (one series, on the cluster with
  ``stumped``), :class:`~adp.context.discords.DiscordModel` (frozen: new rows against a
  training series) and :func:`~adp.context.discords.discord_frame` (a fleet, per entity).

Names are imported on first use, so reading a job spec does not import dask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adp.lazy import lazy_exports

__all__ = [
    "Context",
    "ContextSpec",
    "DiscordModel",
    "FittedContext",
    "discord_frame",
    "discord_scores",
    "fit_context",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Context": "adp.context.spec",
        "ContextSpec": "adp.context.section",
        "DiscordModel": "adp.context.discords",
        "discord_frame": "adp.context.discords",
        "discord_scores": "adp.context.discords",
        "FittedContext": "adp.context.fitted",
        "fit_context": "adp.context.fitted",
    },
)

if TYPE_CHECKING:  # pragma: no cover
    from adp.context.discords import DiscordModel as DiscordModel
    from adp.context.discords import discord_frame as discord_frame
    from adp.context.discords import discord_scores as discord_scores
    from adp.context.fitted import FittedContext as FittedContext
    from adp.context.fitted import fit_context as fit_context
    from adp.context.section import ContextSpec as ContextSpec
    from adp.context.spec import Context as Context
