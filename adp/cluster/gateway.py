"""Clusters from a Dask Gateway: create one (or reuse a running one by name), scale it, and
install ADP's scheduler plugin on it.

A gateway starts each cluster's scheduler with its own preload, so ADP's plugin (audit
records and ``adp_*`` metrics) cannot come from ``--preload``: :func:`gateway_client`
registers it through the client (:func:`adp.observe.plugins.install`), which needs ADP
installed in the image the gateway runs. Where those records go is the scheduler's own
``adp.audit.url``: set it in the gateway's cluster environment
(``c.ClusterConfig.environment = {"DASK_ADP__AUDIT__URL": ...}``).

Ownership, a documented choice: a cluster :func:`gateway_client` creates is shut down when
the returned client is closed (a job's cluster lives as long as the job); a cluster reused
by ``name`` is left running for whoever else uses it.

Addresses: the gateway's HTTP address (``http://gateway:8000``), or the
``gateway://host:port[/cluster-name]`` address dask-gateway gives its schedulers, which is
read as the HTTP API on the same host and port (a gateway's default: one port for both)
and, with a path, as the name of a running cluster to reuse. A proxy on another port is
dask-gateway's own ``gateway.proxy-address`` config key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from dask.typing import no_default
from distributed import Client
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from adp.cluster.adaptive import AdaptOptions
from adp.errors import AccessDeniedError, AdpError, ConfigError, SourceError, bounded, one_line
from adp.redact import redact_url

if TYPE_CHECKING:
    from dask_gateway import Gateway, GatewayCluster

__all__ = [
    "GatewayAuthOptions",
    "GatewayClient",
    "GatewayOptions",
    "gateway_client",
    "gateway_options",
    "is_gateway_address",
]

logger = logging.getLogger(__name__)

GATEWAY_SCHEME = "gateway://"
INSTALL_HINT = "Dask Gateway support needs the dask-gateway package: pip install adp[gateway]"


class GatewayAuthOptions(BaseModel):
    """How ADP proves who it is to the gateway.

    Attributes
    ----------
    type : {"basic", "simple", "jupyterhub"}
        ``basic`` (also called ``simple``, after the server's ``SimpleAuthenticator``):
        HTTP basic auth with ``username`` and ``password``; ``jupyterhub``: a JupyterHub
        API ``token``.
    username : str, optional
        The user (``basic`` only; required there).
    password : SecretStr, optional
        The password (``basic`` only); never shown in a ``repr``, a log or an error.
    token : SecretStr, optional
        The JupyterHub API token (``jupyterhub`` only; required there).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["basic", "simple", "jupyterhub"]
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None

    @model_validator(mode="after")
    def _complete(self) -> GatewayAuthOptions:
        if self.type == "jupyterhub":
            if self.token is None:
                raise ValueError("type 'jupyterhub' needs 'token' (a JupyterHub API token)")
            if self.username is not None or self.password is not None:
                raise ValueError("type 'jupyterhub' takes a 'token', not username/password")
        else:
            if not self.username:
                raise ValueError(f"type {self.type!r} needs 'username' (and its 'password')")
            if self.token is not None:
                raise ValueError(f"type {self.type!r} takes username/password, not a 'token'")
        return self

    def build(self) -> Any:
        """The ``dask_gateway.auth.GatewayAuth`` object this describes."""
        from dask_gateway.auth import BasicAuth, JupyterHubAuth

        if self.type == "jupyterhub":
            assert self.token is not None  # checked above
            return JupyterHubAuth(api_token=self.token.get_secret_value())
        password = self.password.get_secret_value() if self.password is not None else ""
        return BasicAuth(username=self.username, password=password)


class GatewayOptions(BaseModel):
    """A cluster from a Dask Gateway: where, as whom, with which options and how many workers.

    Attributes
    ----------
    address : str
        The gateway's ``http(s)://`` address, or a ``gateway://host:port[/name]`` address.
    auth : GatewayAuthOptions, optional
        ``None`` uses dask-gateway's own ``gateway.auth`` config keys (as a JupyterHub
        deployment of the gateway sets them).
    options : dict
        Cluster options the gateway offers (``gateway.cluster_options()``), such as
        ``worker_memory``; unknown ones are refused by the gateway.
    name : str, optional
        Reuse this running cluster instead of creating one; it is left running.
    adapt : AdaptOptions, optional
        Adaptive workers between ``minimum`` and ``maximum``; the gateway adapts on its own
        period (its ``ClusterConfig.adaptive_period``), so ``interval``, ``wait_count`` and
        ``target_duration`` do not apply.
    workers : int, optional
        A fixed number of workers (``cluster.scale(workers)``); exclusive with ``adapt``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str
    auth: GatewayAuthOptions | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    name: str | None = Field(None, min_length=1)
    adapt: AdaptOptions | None = None
    workers: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> GatewayOptions:
        scheme = urlsplit(self.address).scheme
        if scheme not in ("http", "https") or not urlsplit(self.address).hostname:
            raise ValueError(
                f"address {redact_url(self.address)!r} is not a gateway address: give "
                "http(s)://host:port or gateway://host:port[/cluster-name]"
            )
        if self.adapt is not None and self.workers is not None:
            raise ValueError("give 'workers' (a fixed count) or 'adapt' (bounds), not both")
        return self

    @model_validator(mode="before")
    @classmethod
    def _gateway_scheme(cls, data: Any) -> Any:
        """``gateway://host:port/name`` as the HTTP address and the cluster's name."""
        if not isinstance(data, Mapping) or not is_gateway_address(data.get("address")):
            return data
        http, name = _split_gateway_address(str(data["address"]))
        if name and data.get("name") not in (None, name):
            raise ValueError(f"name {data['name']!r} differs from the address's {name!r}")
        return {**data, "address": http, "name": data.get("name") or name}


def is_gateway_address(address: Any) -> bool:
    """Whether ``address`` is a ``gateway://`` scheduler address."""
    return isinstance(address, str) and address.lower().startswith(GATEWAY_SCHEME)


def _split_gateway_address(address: str) -> tuple[str, str | None]:
    parts = urlsplit(address)
    if not parts.hostname:
        raise ValueError(f"{address!r} names no host: give gateway://host:port[/cluster-name]")
    port = f":{parts.port}" if parts.port else ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"http://{host}{port}", parts.path.strip("/") or None


def gateway_options(
    value: GatewayOptions | Mapping[str, Any] | str | None,
    *,
    address: str | None = None,
    adapt: AdaptOptions | None = None,
) -> GatewayOptions | None:
    """``value`` as :class:`GatewayOptions` (``None`` with no ``address`` stays ``None``).

    Parameters
    ----------
    value : GatewayOptions, mapping or str, optional
        The options, or just the gateway's address.
    address : str, optional
        A ``gateway://host:port[/name]`` address (``--scheduler``); it replaces the host
        and port of ``value``'s address (keeping its ``https`` when host and port agree)
        and names the cluster to reuse.
    adapt : AdaptOptions, optional
        Adaptive bounds given beside the gateway (``adp.connect(adapt=...)``).

    Raises
    ------
    adp.errors.ConfigError
        Naming the field that is wrong, as ``gateway.<field>``.
    """
    if value is None and address is None:
        return None
    data: dict[str, Any]
    if isinstance(value, GatewayOptions):
        data = dict(value)
    elif isinstance(value, str):
        data = {"address": value}
    else:
        data = dict(value or {})
    if address is not None:
        if not is_gateway_address(address):
            raise ConfigError(
                f"the scheduler address {redact_url(address)!r} and a Dask Gateway were both "
                "given: use one of them"
            )
        try:
            http, name = _split_gateway_address(address)
        except ValueError as exc:
            raise ConfigError(f"gateway.address: {exc}") from None
        given = urlsplit(str(data.get("address", "")))
        if given.scheme == "https" and given.netloc.rpartition("@")[2] == urlsplit(http).netloc:
            http = str(data["address"])
        data.update(address=http, name=name or data.get("name"))
    if adapt is not None:
        if data.get("adapt") is not None or data.get("workers") is not None:
            raise ConfigError(
                "gateway: adapt was given beside the gateway, which has its own "
                "'adapt' or 'workers': keep one"
            )
        data["adapt"] = adapt
    try:
        return GatewayOptions.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown field"
        raise ConfigError(f"gateway{'.' + where if where else ''}: {message}") from None


class GatewayClient(Client):
    """A :class:`distributed.Client` of a Dask Gateway cluster.

    Closing it also closes the cluster object; the cluster itself is shut down when ADP
    created it, and left running when it was reused by name.

    Parameters
    ----------
    cluster : dask_gateway.GatewayCluster
        The running cluster.
    **kwargs
        Passed to :class:`distributed.Client`.
    """

    def __init__(self, cluster: GatewayCluster, **kwargs: Any) -> None:
        self.gateway_cluster: GatewayCluster | None = cluster
        super().__init__(cluster, security=cluster.security, loop=cluster.loop, **kwargs)

    def close(self, timeout: Any = no_default) -> Any:
        """Close the client, then the gateway cluster (shut down if ADP created it)."""
        try:
            return super().close(timeout=timeout)
        finally:
            cluster, self.gateway_cluster = self.gateway_cluster, None
            if cluster is not None:
                _close_cluster(cluster)


def gateway_client(
    address: str,
    *,
    auth: GatewayAuthOptions | Mapping[str, Any] | Any = None,
    options: Mapping[str, Any] | None = None,
    name: str | None = None,
    adapt: AdaptOptions | Mapping[str, Any] | None = None,
    workers: int | None = None,
    install_plugins: bool | None = None,
) -> GatewayClient:
    """A client of a cluster from the Dask Gateway at ``address``.

    Creates a cluster (or, with ``name``, connects to that running one), scales it, and
    installs ADP's scheduler plugin on it.

    Parameters
    ----------
    address : str
        The gateway's ``http(s)://`` address, or ``gateway://host:port[/cluster-name]``.
    auth : mapping, GatewayAuthOptions or dask_gateway.auth.GatewayAuth, optional
        ``{"type": "basic", "username": ..., "password": ...}`` (``"simple"`` is the same),
        ``{"type": "jupyterhub", "token": ...}``, or a dask-gateway auth object; ``None``
        uses dask-gateway's ``gateway.auth`` config keys.
    options : mapping, optional
        Cluster options offered by the gateway (``Gateway.cluster_options()``); only when
        a cluster is created.
    name : str, optional
        A running cluster to reuse (``Gateway.connect``); it is left running on close.
    adapt : mapping or AdaptOptions, optional
        Adaptive workers between ``minimum`` and ``maximum`` (``cluster.adapt``).
    workers : int, optional
        A fixed number of workers (``cluster.scale``); exclusive with ``adapt``.
    install_plugins : bool, optional
        Register ADP's scheduler plugin (metrics, graph audits); default
        ``adp.cluster.install-plugins``.

    Returns
    -------
    GatewayClient
        A :class:`distributed.Client`; closing it shuts down the cluster it created.

    Raises
    ------
    adp.errors.ConfigError
        dask-gateway is not installed, an option is wrong, no running cluster has ``name``,
        or the cluster cannot load ADP's plugin.
    adp.errors.AccessDeniedError
        The gateway refused the credentials.
    adp.errors.SourceError
        The gateway cannot be reached, or failed to start the cluster.

    Examples
    --------
    >>> with gateway_client(  # doctest: +SKIP
    ...     "http://gateway:8000",
    ...     auth={"type": "jupyterhub", "token": token},
    ...     adapt={"minimum": 1, "maximum": 8},
    ... ) as client:
    ...     print(client.dashboard_link)
    """
    try:
        import dask_gateway
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    dask_auth = None
    if isinstance(auth, dask_gateway.auth.GatewayAuth):
        dask_auth, auth = auth, None
    settings = gateway_options(
        {
            "address": address,
            "auth": auth,
            "options": dict(options or {}),
            "name": name,
            "adapt": adapt,
            "workers": workers,
        }
    )
    assert settings is not None
    shown = str(redact_url(settings.address))
    if dask_auth is None and settings.auth is not None:
        dask_auth = settings.auth.build()
    try:
        gateway = dask_gateway.Gateway(settings.address, auth=dask_auth)
    except (TypeError, ValueError) as exc:  # dask-gateway's own auth config is incomplete
        raise ConfigError(f"gateway.auth for {shown}: {one_line(str(exc), 200)}") from None
    try:
        cluster = _open_cluster(gateway, settings, shown)
    finally:
        gateway.close()  # the cluster holds its own connection (and shares the loop)
        _closed_once(gateway)
    try:
        _scale(cluster, settings, shown)
        client = GatewayClient(cluster)
    except BaseException:
        _close_cluster(cluster)
        raise
    try:
        if _install_plugins(install_plugins):
            _install_plugin(client, cluster, shown)
    except BaseException:
        client.close()
        raise
    return client


def _close_cluster(cluster: GatewayCluster) -> None:
    """Close ``cluster`` (shutting it down when it was created with ``shutdown_on_close``)."""
    cluster.close()
    _closed_once(cluster.gateway)


def _closed_once(gateway: Gateway) -> None:
    """Make further ``close()`` calls of the closed ``gateway`` do nothing.

    dask-gateway 2026.3's ``Gateway.__del__`` closes it again, which raises from
    distributed's ``LoopRunner.loop`` once the shared event loop has stopped ("Exception
    ignored in ... Gateway.__del__" on stderr, after every job).
    """
    gateway.close = _nothing


def _nothing() -> None:
    return None


def _open_cluster(gateway: Gateway, settings: GatewayOptions, shown: str) -> GatewayCluster:
    """Check address and credentials with one request, then create or connect."""
    with _gateway_errors(shown, "listing its clusters"):
        running = gateway.list_clusters()
    if settings.name is not None:
        names = [report.name for report in running]
        if settings.name not in names:
            raise ConfigError(
                f"gateway.name: no running cluster {settings.name!r} at the Dask Gateway at "
                f"{shown} (running: {bounded(names)})"
            )
        if settings.options:
            logger.warning("gateway.options apply to new clusters; %s is reused", settings.name)
        with _gateway_errors(shown, f"connecting to cluster {settings.name!r}"):
            cluster = gateway.connect(settings.name, shutdown_on_close=False)
        logger.info("reusing Dask Gateway cluster %s at %s", cluster.name, shown)
        return cluster
    with _gateway_errors(shown, "creating a cluster"):
        cluster = gateway.new_cluster(shutdown_on_close=True, **settings.options)
    logger.info("created Dask Gateway cluster %s at %s", cluster.name, shown)
    return cluster


def _scale(cluster: GatewayCluster, settings: GatewayOptions, shown: str) -> None:
    if settings.adapt is not None:
        ignored = settings.adapt.model_fields_set & {"interval", "wait_count", "target_duration"}
        if ignored:
            logger.info(
                "gateway.adapt: %s do not apply; the gateway adapts on its own period",
                ", ".join(sorted(ignored)),
            )
        with _gateway_errors(shown, f"adapting cluster {cluster.name!r}"):
            cluster.adapt(minimum=settings.adapt.minimum, maximum=settings.adapt.maximum)
    elif settings.workers is not None:
        with _gateway_errors(shown, f"scaling cluster {cluster.name!r}"):
            cluster.scale(settings.workers)


def _install_plugins(value: bool | None) -> bool:
    if value is not None:
        return value
    from adp.config import settings

    return settings().cluster.install_plugins


def _install_plugin(client: Client, cluster: GatewayCluster, shown: str) -> None:
    from adp.observe.plugins import install

    try:
        install(client)
    except Exception as exc:  # raised on the scheduler: typically adp is not installed there
        raise ConfigError(
            f"the scheduler of Dask Gateway cluster {cluster.name} at {shown} cannot load "
            f"ADP's plugin ({type(exc).__name__}: {one_line(str(exc), 160)}): install adp in "
            "the gateway's image, or set adp.cluster.install-plugins: false"
        ) from None


@contextmanager
def _gateway_errors(shown: str, doing: str) -> Iterator[None]:
    """Turn dask-gateway's and aiohttp's errors inside into one line naming the gateway.

    Never from ``str()`` of an HTTP error: aiohttp's carry the request, headers included.
    """
    try:
        yield
    except AdpError:
        raise
    except Exception as exc:
        error = _translate(exc, shown, doing)
        if error is None:
            raise
        raise error from None


def _translate(exc: BaseException, shown: str, doing: str) -> AdpError | None:
    import aiohttp
    from dask_gateway import GatewayClusterError, GatewayServerError

    if isinstance(exc, aiohttp.ClientResponseError):
        if exc.status in (401, 403):
            return AccessDeniedError(
                f"the Dask Gateway at {shown} refused the credentials (HTTP {exc.status}): "
                "check gateway.auth (type, username and password, or token)"
            )
        return SourceError(f"the Dask Gateway at {shown} answered HTTP {exc.status} {doing}")
    if isinstance(exc, aiohttp.ClientConnectionError | OSError | asyncio.TimeoutError):
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        return SourceError(
            f"cannot reach the Dask Gateway at {shown} ({reason}): check the address and that "
            "the gateway is running"
        )
    if isinstance(exc, GatewayClusterError | GatewayServerError):
        return SourceError(f"the Dask Gateway at {shown} failed {doing}: {one_line(str(exc), 200)}")
    if isinstance(exc, ValueError):  # 404 / 422 from the gateway: names what it refused
        return ConfigError(
            f"the Dask Gateway at {shown} refused {doing}: {one_line(str(exc), 200)} "
            "(check gateway.options and gateway.name)"
        )
    return None
