"""Dask Gateway: options and specs checked before any request; then a real
``dask-gateway-server`` (local-process backend, simple auth with a password) on 127.0.0.1:
a job run through it, workers scaled by it, ADP's plugin on its clusters, and credentials it
refuses."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.config
import httpx
import numpy as np
import pandas as pd
import pytest
from ci_support import need_in_ci

import adp
from adp.cluster import cluster_for
from adp.cluster.gateway import GatewayClient, gateway_client, gateway_options
from adp.errors import AccessDeniedError, ConfigError, SourceError, SpecError
from adp.jobs.runner import run_job
from adp.jobs.spec import JobSpec
from adp.observe.audit import AuditLog

pytest.importorskip("dask_gateway")
TESTS = Path(__file__).resolve().parents[1]

PASSWORD = "gw-test-s3cret"
AUTH = {"type": "simple", "username": "alice", "password": PASSWORD}
BIN = Path(sys.executable).parent

CONFIG = """
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
c.DaskGateway.log_level = "WARN"
c.SimpleAuthenticator.password = {password!r}
c.Proxy.address = "127.0.0.1:{port}"
c.UnsafeLocalBackend.clusters_directory = {clusters!r}
c.UnsafeLocalBackend.sigint_timeout = 5
c.ClusterConfig.scheduler_cmd = [{dask!r}, "scheduler"]
c.ClusterConfig.worker_cmd = [{dask!r}, "worker"]
c.ClusterConfig.worker_memory = "1 G"
c.ClusterConfig.adaptive_period = 0.5
# what a deployment gives its clusters: ADP's own configuration (here its state directory,
# where the scheduler plugin's audit trail goes)
c.ClusterConfig.environment = {environment!r}
"""


@dataclass(frozen=True)
class GatewayServer:
    address: str
    port: int
    state_dir: Path
    log: Path

    def running(self) -> list[str]:
        """alice's clusters that are starting or running (the gateway's own API)."""
        answer = httpx.get(
            f"{self.address}/api/v1/clusters/?status=PENDING,RUNNING",
            auth=("alice", PASSWORD),
            timeout=5,
        )
        answer.raise_for_status()
        return sorted(answer.json())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gateway_processes(port: int) -> list[int]:
    """Schedulers and workers this gateway started (they run in sessions of their own)."""
    marker = f"DASK_GATEWAY_API_URL=http://127.0.0.1:{port}/api".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                found.append(int(entry.name))
    return found


def _wait(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {seconds} s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def gateway_server(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[GatewayServer]:
    try:
        import dask_gateway_server  # noqa: F401
    except ImportError:
        need_in_ci("dask-gateway-server[local] is not installed")
    root = tmp_path_factory.mktemp("gateway")
    port = _free_port()
    state = root / "scheduler-state"
    environment = {"DASK_ADP__STATE_DIR": str(state), "AWS_EC2_METADATA_DISABLED": "true"}
    config = root / "dask_gateway_config.py"
    config.write_text(
        CONFIG.format(
            password=PASSWORD,
            port=port,
            clusters=str(root / "clusters"),
            dask=str(BIN / "dask"),
            environment=environment,
        )
    )
    log = root / "gateway.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "dask_gateway_server", "-f", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=root,
            start_new_session=True,
        )
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert server.poll() is None, f"the gateway exited: {log.read_text()[-2000:]}"
            try:
                if httpx.get(f"{address}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"no gateway in 20 s: {log.read_text()[-2000:]}"
            time.sleep(0.1)
        yield GatewayServer(address, port, state, log)
    finally:
        server.send_signal(signal.SIGTERM)  # the gateway stops its clusters first
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        deadline = time.monotonic() + 10
        while _gateway_processes(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        strays = _gateway_processes(port)
        for pid in strays:
            os.kill(pid, signal.SIGKILL)
        assert strays == [], f"the gateway left processes running: {strays}"


def _job(tmp_path: Path, **cluster: Any) -> JobSpec:
    lake = tmp_path / "lake"
    lake.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        frame = pd.DataFrame(rng.normal(size=(400, 3)), columns=["a", "b", "c"])
        frame["sensor_id"] = f"s{i}"
        frame["seq"] = np.arange(400)
        frame.to_parquet(lake / f"part-{i}.parquet", index=False)
    return JobSpec.from_dict(
        {
            "name": "gateway-job",
            "source": {"uri": str(lake), "key": ["sensor_id", "seq"]},
            "detector": {"name": "hbos"},
            "threshold": {"contamination": 0.05},
            "output": {"uri": str(tmp_path / "scores")},
            "profile": False,
            "cluster": cluster,
        }
    )


def _workers(client: Any) -> int:
    return len(client.scheduler_info(n_workers=-1)["workers"])


def _metric(body: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(name))


# --- before any request --------------------------------------------------------------


def test_a_gateway_address_names_the_cluster_to_reuse() -> None:
    options = gateway_options("gateway://10.0.0.7:8000/abc123")
    assert options is not None
    assert (options.address, options.name) == ("http://10.0.0.7:8000", "abc123")
    # --scheduler gateway://... beside a spec's section: the section's credentials and
    # https stay, the address names host, port and cluster
    merged = gateway_options(
        {"address": "https://gw.example:8443", "auth": AUTH, "workers": 3},
        address="gateway://gw.example:8443/abc123",
    )
    assert merged is not None and merged.auth is not None
    assert (merged.address, merged.name, merged.workers) == (
        "https://gw.example:8443",
        "abc123",
        3,
    )
    assert merged.auth.password is not None
    assert merged.auth.password.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(merged)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"address": "tcp://10.0.0.7:8786"}, r"^gateway: address 'tcp://10\.0\.0\.7:8786' is not"),
        ({"address": "http://gw:8000", "auth": {"type": "basic"}}, r"^gateway\.auth: .*username"),
        ({"address": "http://gw:8000", "auth": {"type": "jupyterhub"}}, r"^gateway\.auth: .*token"),
        ({"address": "http://gw:8000", "workers": 2, "adapt": {"maximum": 2}}, "not both"),
        ({"address": "http://gw:8000", "wokers": 2}, r"^gateway\.wokers: unknown field$"),
        ({"address": "http://gw:8000", "adapt": {"minimum": 3, "maximum": 2}}, "below minimum"),
    ],
)
def test_wrong_options_name_their_field_in_one_line(value: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        gateway_options(value)
    assert "\n" not in str(refused.value)


def test_connect_refuses_mixed_targets_before_any_request() -> None:
    with pytest.raises(ConfigError, match="both given"):
        adp.connect("tcp://127.0.0.1:8786", gateway="http://127.0.0.1:1")
    with pytest.raises(ConfigError, match=r"\['n_workers'\] do not apply to a Dask Gateway"):
        adp.connect(gateway="http://127.0.0.1:1", n_workers=2)
    with pytest.raises(ConfigError, match="adapt was given beside the gateway"):
        adp.connect(
            gateway={"address": "http://127.0.0.1:1", "workers": 2},
            adapt={"minimum": 1, "maximum": 2},
        )


def test_the_configured_gateway_comes_after_the_scheduler_address() -> None:
    configured = {"adp.cluster.gateway": {"address": "http://127.0.0.1:1", "workers": 2}}
    # no address anywhere: the configured gateway is the target (local options refused)
    with (
        dask.config.set({**configured, "scheduler-address": None}),
        pytest.raises(ConfigError, match=r"\['n_workers'\] do not apply to a Dask Gateway"),
    ):
        adp.connect(n_workers=2)
    # an injected scheduler address wins over it (the local options then refused for it)
    with (
        dask.config.set({**configured, "scheduler-address": "tcp://127.0.0.1:1"}),
        pytest.raises(ConfigError, match="cannot apply to the existing scheduler"),
    ):
        adp.connect(n_workers=2)
    with (
        dask.config.set({"adp.cluster.gateway": {"address": "http://x", "colour": 1}}),
        pytest.raises(ConfigError, match="colour"),
    ):
        adp.connect()


def test_without_dask_gateway_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "dask_gateway", None)  # `import dask_gateway` fails
    with pytest.raises(ConfigError, match=r"pip install adp\[gateway\]"):
        gateway_client("http://127.0.0.1:1", auth=AUTH)


def test_a_job_spec_gateway_section_is_checked_and_keeps_its_secrets(tmp_path: Path) -> None:
    spec = _job(tmp_path, gateway={"address": "http://gw:8000", "auth": AUTH, "workers": 2})
    assert spec.cluster.gateway is not None
    assert PASSWORD not in repr(spec) and PASSWORD not in str(spec.to_dict())
    assert spec.to_dict()["cluster"]["gateway"]["auth"]["password"] == "**********"
    with pytest.raises(SpecError, match=r"cluster: 'gateway' sizes its own cluster: move n_wor"):
        _job(tmp_path / "b", gateway={"address": "http://gw:8000"}, n_workers=2)
    with pytest.raises(SpecError, match=r"cluster\.gateway\.address: 'ftp://gw' is not a gat"):
        _job(tmp_path / "c", gateway={"address": "ftp://gw"})
    with pytest.raises(SpecError, match=r"cluster\.gateway\.auth: type 'simple' needs 'user"):
        _job(tmp_path / "d", gateway={"address": "http://gw:8000", "auth": {"type": "simple"}})


def test_an_injected_scheduler_wins_over_a_gateway_section_with_a_notice(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    address = client.scheduler.address
    with (
        dask.config.set({"scheduler-address": address}),
        caplog.at_level(logging.WARNING, logger="adp.cluster.connect"),
        cluster_for(None, gateway={"address": "http://127.0.0.1:1", "auth": AUTH}) as c,
    ):
        assert c.scheduler.address == address
    assert "yields to the scheduler" in caplog.text and "gateway" in caplog.text
    assert PASSWORD not in caplog.text


# --- a real gateway -------------------------------------------------------------------


@pytest.mark.slow
def test_wrong_or_missing_credentials_are_refused_in_one_line(
    gateway_server: GatewayServer,
) -> None:
    # the server really asks: a request without credentials is a 401
    answer = httpx.get(f"{gateway_server.address}/api/v1/clusters/", timeout=5)
    assert answer.status_code == 401
    with pytest.raises(AccessDeniedError) as refused:
        gateway_client(gateway_server.address, auth={**AUTH, "password": "not-it"})
    message = str(refused.value)
    assert gateway_server.address in message and "gateway.auth" in message
    assert "\n" not in message and "not-it" not in message
    # no credentials of ours: dask-gateway's own config (basic, no password) is refused too
    with (
        dask.config.set({"gateway.auth.type": "basic", "gateway.auth.kwargs": {}}),
        pytest.raises(AccessDeniedError, match="refused the credentials"),
    ):
        gateway_client(gateway_server.address)
    closed = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(SourceError, match=f"cannot reach the Dask Gateway at {closed}"):
        gateway_client(closed, auth=AUTH)
    assert gateway_server.running() == []


@pytest.mark.slow
def test_a_gateway_cluster_scales_carries_the_plugin_and_runs_a_job(
    gateway_server: GatewayServer, tmp_path: Path
) -> None:
    adaptive = {"minimum": 2, "maximum": 2}
    with gateway_client(gateway_server.address, auth=AUTH, adapt=adaptive) as client:
        assert isinstance(client, GatewayClient) and client.gateway_cluster is not None
        name = client.gateway_cluster.name
        assert gateway_server.running() == [name]
        _wait(lambda: _workers(client) == 2, 60, "the gateway did not adapt to 2 workers")
        assert client.run_on_scheduler(lambda dask_scheduler: "adp" in dask_scheduler.plugins)

        # `adp run JOB --scheduler gateway://host:port/<name>`: the job's cluster section
        # gives the credentials (and a fixed scale); the running cluster is reused and left
        # running
        spec = _job(
            tmp_path,
            gateway={"address": gateway_server.address, "auth": AUTH, "workers": 2},
        )
        result = run_job(
            spec,
            scheduler=f"gateway://127.0.0.1:{gateway_server.port}/{name}",
            show_progress=False,
        )
        assert result.rows == len(pd.read_parquet(tmp_path / "scores")) == 800
        assert result.workers == 2
        assert gateway_server.running() == [name]

        # ADP's plugin on the gateway's scheduler: metrics and graph audits
        body = httpx.get(client.dashboard_link.replace("/status", "/metrics"), timeout=5).text
        assert _metric(body, "adp_graphs_submitted_total") > 0
        assert _metric(body, "adp_rows_scored_total") == 800
        scheduler = client.scheduler_info()["address"]
        log = AuditLog(
            f"sqlite:///{gateway_server.state_dir / 'audit.db'}",
            state_dir=gateway_server.state_dir,
        )

        def audited() -> bool:
            return any(
                r.source == "scheduler" and r.event_type == "graph.submitted"
                for r in log.records()
                if r.resource == scheduler
            )

        _wait(audited, 10, "no graph audit record from the gateway cluster's scheduler")

        # adp.cluster.gateway in the config: adp.connect() with no address takes the
        # gateway's cluster by name (reused, left running)
        configured = {"address": gateway_server.address, "auth": AUTH, "name": name}
        with (
            dask.config.set({"adp.cluster.gateway": configured, "scheduler-address": None}),
            adp.connect() as again,
        ):
            assert isinstance(again, GatewayClient)
            assert again.scheduler_info()["address"] == scheduler
        assert gateway_server.running() == [name]
    # ADP created the cluster: closing the client shut it down
    _wait(lambda: gateway_server.running() == [], 20, "the cluster ADP created kept running")
