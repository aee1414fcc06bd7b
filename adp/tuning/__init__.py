"""Distributed model and hyperparameter search: the engine behind :func:`adp.search`.

Modules: :mod:`~adp.tuning.space` (search spaces, candidates), :mod:`~adp.tuning.trials`
(one trial, on a worker), :mod:`~adp.tuning.engines` (futures or dask-ml, on the cluster),
:mod:`~adp.tuning.selection` (label-free criteria), the learned label-free selector
(:mod:`~adp.tuning.metafeatures` and :mod:`~adp.tuning.landmarks`, meta-features;
:mod:`~adp.tuning.perftable` and :mod:`~adp.tuning.tablebuild`, its performance table;
:mod:`~adp.tuning.selector`, the ranker; :mod:`~adp.tuning.selecting`, one selection on
the cluster; :mod:`~adp.tuning.selector_search`, its place in :func:`search`),
:mod:`~adp.tuning.results` (:class:`SearchResult`) and :mod:`~adp.tuning.api`
(:func:`search`). The package knows nothing of job specs: the
``search:`` section of a job lives in :mod:`adp.jobs.search`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adp.lazy import lazy_exports

__all__ = ["Candidate", "SearchResult", "draw_candidates", "search"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "search": "adp.tuning.api",
        "SearchResult": "adp.tuning.api",
        "draw_candidates": "adp.tuning.space",
        "Candidate": "adp.tuning.space",
    },
)

if TYPE_CHECKING:  # pragma: no cover
    from adp.tuning.api import SearchResult as SearchResult
    from adp.tuning.api import search as search
    from adp.tuning.space import Candidate as Candidate
    from adp.tuning.space import draw_candidates as draw_candidates
