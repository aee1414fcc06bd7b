"""Ship each fitted model to the cluster once per client, not once per graph.

A graph that scores depends on the fitted scorer. Embedded in the graph (``dask.delayed``
of the scorer), the model travels from the client to the scheduler with *every* graph:
a 16 MB ECDF model makes dask warn about a large graph and costs a few tenths of a second
per ``detect``. Instead, :func:`model_ref` submits the model once per (client, model) as a
persisted task, ``adp-model-<model_id>``, keeps its :class:`~distributed.Future` here, and
puts only a reference to that key into every later graph (the pattern dask's large-graph
warning recommends).

- The model is *computed*, not scattered: the scheduler keeps the task, so a worker that
  dies with the only copy costs a recomputation, never a lost model.
- A future lives no longer than what owns it: this cache drops it when the last detector
  that shipped it is garbage collected, and when its client closes (or restarts).
  Nothing is stored on the detector, so pickling a detector never captures a future.
- Without a distributed client (the synchronous or threaded scheduler, or inside
  :func:`in_process`), :func:`model_ref` falls back to the model embedded in the graph.
  A graph is bound to where it was built: one built with a client refers to the model on
  that cluster, so computing it with ``scheduler="sync"`` fails (build it under
  ``dask.config.set(scheduler="sync")`` or :func:`in_process` instead).

Between graphs, dask's active memory manager keeps one copy of the model on the cluster:
a worker that scores without holding one fetches it from a peer, never from the client.
"""

from __future__ import annotations

import collections
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import dask
from dask.delayed import Delayed

__all__ = [
    "compute_fit",
    "distributed_client",
    "forget",
    "in_process",
    "model_ref",
    "shipped_keys",
]

_IN_PROCESS: ContextVar[bool] = ContextVar("adp_in_process", default=False)
_LIVE = ("pending", "finished")  # statuses of a future that can still be depended on


@dataclass
class _Shipped:
    """One model's future on one client and the detectors that depend on it."""

    future: Any
    owners: dict[int, weakref.ref[Any]] = field(default_factory=dict)


_shipped: dict[tuple[str, str], _Shipped] = {}
_lock = threading.Lock()
# Owners collected while the lock was held, applied at the next _sweep. A weak reference's
# callback runs in whichever thread the garbage collector ran in (it runs at any
# allocation), so it never waits for the lock: in the client's event loop, waiting for a
# lock held by a thread that waits on that loop (model_ref's wait for the model)
# deadlocked both (seen in a test run); in the thread holding it, it would change
# _shipped under the feet of the code iterating it.
_dropped: collections.deque[tuple[tuple[str, str], int]] = collections.deque()


@contextmanager
def in_process() -> Iterator[None]:
    """Within the block (in this thread or task), :func:`model_ref` embeds the model in the
    graph: for graphs computed in this process (``scheduler="sync"``), which cannot use a
    cluster's futures."""
    token = _IN_PROCESS.set(True)
    try:
        yield
    finally:
        _IN_PROCESS.reset(token)


def distributed_client() -> Any | None:
    """The distributed client graphs built now will run on, or ``None``.

    ``None`` inside :func:`in_process`, when dask's ``scheduler`` setting names a local
    scheduler, without a default client, or for a client that is not running or is
    asynchronous.
    """
    if _IN_PROCESS.get():
        return None
    scheduler = dask.config.get("scheduler", None)
    if scheduler not in (None, "dask.distributed", "distributed"):
        return None
    try:
        from distributed.client import default_client

        client = default_client()
    except (ImportError, ValueError):
        return None
    if client.status != "running" or client.asynchronous:
        return None
    return client


def _sweep() -> None:
    """Apply the owners collected meanwhile, and forget the futures of closed clients and
    those the scheduler let go (lock held)."""
    _apply_dropped()
    for cache_key in [k for k, s in _shipped.items() if s.future.status not in _LIVE]:
        _shipped.pop(cache_key, None)


def _drop_owner(cache_key: tuple[str, str], owner_id: int) -> None:
    """A detector that shipped the model was collected: forget the model after the last
    (lock held).

    Only this reference goes: a lazy collection built earlier still holds the future (and
    so the model on the cluster) until it is computed or collected itself.
    """
    shipped = _shipped.get(cache_key)
    if shipped is not None:
        shipped.owners.pop(owner_id, None)
        if not shipped.owners:
            _shipped.pop(cache_key, None)


def _collected(cache_key: tuple[str, str], owner_id: int, _: weakref.ref[Any]) -> None:
    """The weak reference's callback: :func:`_drop_owner` now if the lock is free, else
    at the next :func:`_sweep`; it never waits for the lock."""
    _dropped.append((cache_key, owner_id))
    if _lock.acquire(blocking=False):
        try:
            _apply_dropped()
        finally:
            _lock.release()


def _apply_dropped() -> None:
    """:func:`_drop_owner` for each owner collected so far (lock held)."""
    while _dropped:
        _drop_owner(*_dropped.popleft())


def _submit(client: Any, scorer: Any, key: str) -> Any:
    """The model as a persisted task of ``client`` (the one transfer of the model), in
    memory on the cluster when this returns.

    Waiting matters: the scheduler handles graph submissions concurrently (each one's
    deserialisation is offloaded), so a small scoring graph sent right after the model's
    large graph can be checked first, find no task for the model's key and be cancelled
    for "lost dependencies". Only the status is waited for; the model does not come back.
    """
    from distributed import wait

    with warnings.catch_warnings():
        # Sending the model once is the point; the warning is for sending it every time.
        warnings.filterwarnings("ignore", message="Sending large graph")
        future = client.compute(dask.delayed(scorer, name=key))
    wait([future])
    return future


def model_ref(owner: object, scorer: Any, model_id: str) -> Delayed:
    """The fitted ``scorer`` as one graph key, ``adp-model-<model_id>``, shipped once.

    Parameters
    ----------
    owner : object
        The fitted detector; the model stays on the cluster while it (or another owner of
        the same model) lives.
    scorer : Scorer
        The fitted scorer.
    model_id : str
        The fit's id (``model_id_``), which names the key.

    Returns
    -------
    Delayed
        With ``adp.score.ship-models`` (on by default) and a distributed client: a
        reference to the model's future on that client (submitted on the first call,
        reused after). Else the model embedded in the graph.
    """
    key = f"adp-model-{model_id}"
    client = distributed_client() if dask.config.get("adp.score.ship-models", True) else None
    if client is None:
        return dask.delayed(scorer, name=key)
    cache_key = (str(client.id), key)
    with _lock:
        _sweep()
        shipped = _shipped.get(cache_key)
        if shipped is None:
            shipped = _shipped[cache_key] = _Shipped(_submit(client, scorer, key))
        _own(shipped, cache_key, owner)
        future = shipped.future
    return dask.delayed(future)


def _own(shipped: _Shipped, cache_key: tuple[str, str], owner: object) -> None:
    """Keep ``shipped`` while ``owner`` lives (lock held)."""
    owner_id = id(owner)
    if owner_id not in shipped.owners:
        shipped.owners[owner_id] = weakref.ref(owner, partial(_collected, cache_key, owner_id))


def compute_fit(
    owner: object, planned: Delayed, pick: Callable[[Any], Any], model_id: str, scheduler: Any
) -> Any:
    """Compute a fit's ``planned`` result and, on a distributed client, keep its model on
    the cluster as ``adp-model-<model_id>``, so that it is never sent back.

    The model is fitted on a worker and comes to the client with the result (the client
    needs it: a detector pickles and registers its model). :func:`model_ref` used to send
    it back up at the first ``detect``; instead ``pick(result)`` (the scorer) runs where the
    result is, as the model's task, and :func:`model_ref` finds it there. It lives as long
    as a shipped model (the owner, the client), and if its worker dies it is recomputed
    from the fit's graph like any task.

    Parameters
    ----------
    owner : object
        The detector being fitted.
    planned : Delayed
        The fit's result.
    pick : callable
        ``pick(result)``: the model :func:`model_ref` is asked for.
    model_id : str
        The fit's id (``model_id_``).
    scheduler : optional
        The scheduler the fit runs on (a local one: nothing is kept).

    Returns
    -------
    object
        The computed result.
    """
    shipping = dask.config.get("adp.score.ship-models", True)
    client = distributed_client() if scheduler is None and shipping else None
    if client is None:
        return planned.compute(scheduler=scheduler)
    from distributed import wait

    fitted = client.compute(planned)
    result = fitted.result()
    key = f"adp-model-{model_id}"
    model = client.submit(pick, fitted, key=key, pure=False)
    wait([model])  # in memory before any graph refers to it (see _submit)
    cache_key = (str(client.id), key)
    with _lock:
        _sweep()
        shipped = _shipped[cache_key] = _Shipped(model)
        _own(shipped, cache_key, owner)
    return result


def shipped_keys(client: Any) -> list[str]:
    """The model keys held for ``client`` (live futures only), sorted."""
    with _lock:
        _sweep()
        return sorted(k for c, k in _shipped if c == str(client.id))


def forget(client: Any) -> None:
    """Drop every model future held for ``client`` (lazy collections that still refer to
    one keep it alive until they are computed or collected)."""
    with _lock:
        for cache_key in [k for k in _shipped if k[0] == str(client.id)]:
            _shipped.pop(cache_key, None)
