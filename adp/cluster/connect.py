"""Connecting to a Dask cluster: an explicit address (``gateway://`` ones through Dask
Gateway), a Dask Gateway, else the configured address, else a new local cluster of worker
processes."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dask.config
from distributed import Client

from adp.cluster.adaptive import AdaptOptions, adapt_options
from adp.cluster.gateway import GatewayOptions, gateway_client, gateway_options, is_gateway_address
from adp.cluster.lost import close_client
from adp.config import settings

logger = logging.getLogger(__name__)


def connect(
    address: str | None = None,
    *,
    adapt: AdaptOptions | Mapping[str, Any] | None = None,
    gateway: GatewayOptions | Mapping[str, Any] | str | None = None,
    **local_cluster_kwargs: Any,
) -> Client:
    """Return a :class:`distributed.Client` for ADP's work.

    Parameters
    ----------
    address : str, optional
        A scheduler address such as ``"tcp://10.0.0.5:8786"``. When omitted, the
        ``scheduler-address`` dask config key is used (the ``DASK_SCHEDULER_ADDRESS``
        variable sets it); when that is empty too, the Dask Gateway of
        ``adp.cluster.gateway``; when none is configured, a new
        :class:`distributed.LocalCluster` with worker *processes* is started and closed
        with the client.
    **local_cluster_kwargs
        Passed to :class:`distributed.LocalCluster` when one is started (for example
        ``n_workers=4`` or ``memory_limit="2GiB"``); defaults come from ``adp.cluster.*``.
        Ignored, with an error, when a scheduler address is in use.
    adapt : mapping or AdaptOptions, optional
        Scale the LocalCluster's workers with load between ``minimum`` and ``maximum``
        (see :class:`adp.cluster.adaptive.AdaptOptions`); default ``adp.cluster.adapt``.
        A scheduler ADP does not start cannot be adapted from here (an error); with a
        Dask Gateway, the gateway's cluster adapts.
    gateway : str, mapping or GatewayOptions, optional
        A cluster from a Dask Gateway: its ``http(s)://`` address, or
        ``{"address", "auth", "options", "name", "adapt", "workers"}`` (see
        :func:`adp.cluster.gateway.gateway_client`). Used instead of the configured
        ``scheduler-address``; an explicit ``address`` of another scheme is an error. A
        ``gateway://host:port[/cluster-name]`` ``address`` takes this path too.

    Returns
    -------
    distributed.Client
        Use it as a context manager, or call ``close()``, to release the cluster.

    Examples
    --------
    >>> with adp.connect(n_workers=2) as client:  # doctest: +SKIP
    ...     print(client.dashboard_link)
    >>> client = adp.connect(  # doctest: +SKIP
    ...     gateway={"address": "http://gateway:8000", "auth": {"type": "jupyterhub", "token": t}},
    ...     adapt={"minimum": 1, "maximum": 8},
    ... )
    """
    options_given = adapt_options(adapt)
    if gateway is None:
        address = address or dask.config.get("scheduler-address", None)
        if not address:
            gateway = settings().cluster.gateway
    if gateway is not None or is_gateway_address(address):
        return _gateway_client(address, gateway, options_given, local_cluster_kwargs)
    if address:
        if options_given is not None:
            from adp.errors import ConfigError

            raise ConfigError(
                f"adapt cannot scale the existing scheduler at {address!r} from a client: "
                "adaptive workers apply to a cluster ADP starts (on Kubernetes, the "
                "operator's DaskAutoscaler scales the DaskCluster)"
            )
        if local_cluster_kwargs:
            from adp.errors import ConfigError

            raise ConfigError(
                f"local cluster options {sorted(local_cluster_kwargs)} cannot apply to the "
                f"existing scheduler at {address!r}: drop them or omit the address"
            )
        return Client(address)

    cfg = settings().cluster
    options: dict[str, Any] = {
        "n_workers": cfg.n_workers,
        "threads_per_worker": cfg.threads_per_worker,
        "memory_limit": cfg.memory_limit,
        "dashboard_address": cfg.dashboard_address,
        "processes": True,
        # a failed task is the job's one error line, not the workers' warning logs too
        "silence_logs": logging.ERROR,
    }
    options.update(local_cluster_kwargs)
    install_plugins = bool(options.pop("install_plugins", cfg.install_plugins))
    environ = {
        **dask.config.get("distributed.nanny.pre-spawn-environ", {}),
        **{k: str(v) for k, v in cfg.worker_environ.items()},
    }
    # Client() without an address owns the LocalCluster it starts: closing the client
    # closes the cluster too. The nannies read pre-spawn-environ when they are created.
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
        _process_environ(cfg.worker_environ),
        _workers_ignore_sigint(),
    ):
        client = Client(**options)
    if install_plugins:
        _install_plugins(client)
    if cfg.warm_workers:
        from adp.cluster.warm import warm_workers

        warm_workers(client)
    scaling = options_given or adapt_options(cfg.adapt)
    if scaling is not None and client.cluster is not None:
        client.cluster.adapt(**scaling.kwargs())
    return client


@contextmanager
def _process_environ(values: dict[str, Any]) -> Iterator[None]:
    """``values`` in this process's environment while ADP's nannies spawn their workers.

    distributed lets a variable already in the spawning process's environment override
    ``distributed.nanny.pre-spawn-environ``, and every nanny writes its pre-spawn values
    into that environment: after any cluster with distributed's defaults, ADP's
    ``adp.cluster.worker-environ`` would silently stop applying. The previous values are
    restored afterwards.
    """
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update({key: str(value) for key, value in values.items()})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _workers_ignore_sigint() -> Iterator[None]:
    """Worker processes spawned inside ignore SIGINT (an ignored signal stays ignored
    across ``exec``, and Python then installs no ``KeyboardInterrupt`` handler).

    Ctrl-C in a terminal reaches the whole process group: without this, each local worker
    process prints a ``KeyboardInterrupt`` traceback while the client stops the job and
    closes the cluster anyway. A Ctrl-C during the few seconds the cluster starts is
    ignored too. Only the main thread may change handlers; elsewhere nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


@contextmanager
def cluster_for(
    address: str | None = None,
    *,
    client: Client | None = None,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | None = None,
    adapt: AdaptOptions | Mapping[str, Any] | None = None,
    gateway: GatewayOptions | Mapping[str, Any] | None = None,
) -> Iterator[Client]:
    """A client for one job: ``client`` as given (left open), else :func:`connect`.

    Local cluster options that are ``None`` fall back to ``adp.cluster.*``. When a scheduler
    is in use they and ``gateway`` yield to it: quietly for an explicit ``address``
    (``--scheduler``), with a notice for one injected through ``DASK_SCHEDULER_ADDRESS`` (as
    a DaskJob does), so a job spec's cluster section runs unchanged in both. A
    ``gateway://`` address goes through the Dask Gateway, with ``gateway``'s credentials
    and scaling; with ``gateway`` alone, the job runs on a cluster from that gateway (shut
    down after it, unless reused by name).
    """
    if client is not None:
        yield client
        return
    explicit = bool(address)  # --scheduler: the shape is ignored quietly, as asked
    address = address or dask.config.get("scheduler-address", None)
    local_shape = {
        "n_workers": n_workers,
        "threads_per_worker": threads_per_worker,
        "memory_limit": memory_limit,
    }
    if is_gateway_address(address) or (gateway is not None and not address):
        given = sorted(k for k, v in local_shape.items() if v is not None)
        if given:
            logger.warning(
                "the job's cluster section (%s) yields to the Dask Gateway, which sizes its "
                "own workers (give gateway options and workers instead)",
                ", ".join(given),
            )
        c = connect(address, gateway=gateway, adapt=adapt)
    elif address:
        shape = {**local_shape, "adapt": adapt, "gateway": gateway}
        given = sorted(k for k, v in shape.items() if v is not None)
        if given and not explicit:  # injected (DASK_SCHEDULER_ADDRESS, as a DaskJob does)
            logger.warning(
                "the job's cluster section (%s) yields to the scheduler at %s, which ADP did "
                "not start (its own deployment sizes and scales it)",
                ", ".join(given),
                address,
            )
        c = connect(address)
    else:
        options: dict[str, Any] = {
            "n_workers": n_workers,
            "threads_per_worker": threads_per_worker,
            "memory_limit": memory_limit,
        }
        c = connect(adapt=adapt, **{k: v for k, v in options.items() if v is not None})
    try:
        yield c
    finally:
        close_client(c)  # at once when the scheduler is lost


def _gateway_client(
    address: str | None,
    gateway: GatewayOptions | Mapping[str, Any] | str | None,
    adapt: AdaptOptions | None,
    local_cluster_kwargs: dict[str, Any],
) -> Client:
    """:func:`connect` through a Dask Gateway (see :mod:`adp.cluster.gateway`)."""
    install_plugins = local_cluster_kwargs.pop("install_plugins", None)
    if local_cluster_kwargs:
        from adp.errors import ConfigError

        raise ConfigError(
            f"local cluster options {sorted(local_cluster_kwargs)} do not apply to a Dask "
            "Gateway cluster: give the gateway's cluster options (options=...) and workers"
        )
    settings = gateway_options(gateway, address=address, adapt=adapt)
    assert settings is not None  # a gateway or a gateway:// address was given
    return gateway_client(
        settings.address,
        auth=settings.auth,
        options=settings.options,
        name=settings.name,
        adapt=settings.adapt,
        workers=settings.workers,
        install_plugins=install_plugins,
    )


def _install_plugins(client: Client) -> None:
    try:
        from adp.observe.plugins import install
    except ImportError:  # pragma: no cover - observe is part of the package
        return
    install(client)
