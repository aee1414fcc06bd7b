"""Distributed model and hyperparameter search: :func:`adp.search`.

Modules: :mod:`~adp.search.space` (search spaces, candidates), :mod:`~adp.search.trials`
(one trial, on a worker), :mod:`~adp.search.engines` (futures or dask-ml, on the cluster),
:mod:`~adp.search.selection` (unsupervised criteria), :mod:`~adp.search.api`
(:func:`search`, :class:`SearchResult`), :mod:`~adp.search.job` (the ``search:`` section of a
job spec) and :mod:`~adp.search.cli` (``adp search JOB.yaml``).

``adp.search`` names both this package and the function :func:`adp.search.api.search`.
Python binds ``adp.search`` to the package as soon as any of its submodules is imported,
which would shadow the function exported by :mod:`adp`; so the package itself is callable
and forwards to the function: ``adp.search(ddf, ...)`` works whichever import came first.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "search": "adp.search.api",
    "SearchResult": "adp.search.api",
    "draw_candidates": "adp.search.space",
    "Candidate": "adp.search.space",
    "run_search_job": "adp.search.job",
}

__all__ = ["Candidate", "SearchResult", "draw_candidates", "run_search_job", "search"]

if TYPE_CHECKING:  # pragma: no cover
    from adp.search.api import SearchResult as SearchResult
    from adp.search.api import search as search
    from adp.search.job import run_search_job as run_search_job
    from adp.search.space import Candidate as Candidate
    from adp.search.space import draw_candidates as draw_candidates


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'adp.search' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


class _CallableSearchPackage(types.ModuleType):
    """The ``adp.search`` package, callable as :func:`adp.search.api.search`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from adp.search.api import search as run_search

        return run_search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableSearchPackage
