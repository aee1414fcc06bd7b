"""S3 reads fail within the bounds ADP sets, on the client and on the workers: s3fs's own
retry loop (5 attempts with backoff) does not multiply botocore's bounded retries, so a
hung endpoint fails in seconds, naming the endpoint, not after the ~45 s it took."""

from __future__ import annotations

import pickle
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import fsspec
import pytest
import yaml

from adp.io.bounded_s3 import BoundedS3FileSystem
from adp.io.s3 import with_timeouts

ADP = [sys.executable, "-m", "adp.cli"]


@pytest.fixture
def hung_server() -> Iterator[socket.socket]:
    """A socket that takes connections (the kernel's backlog) and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def hung_endpoint(hung_server: socket.socket) -> str:
    """The address of :func:`hung_server`."""
    return f"http://127.0.0.1:{hung_server.getsockname()[1]}"


def _connections_made(server: socket.socket) -> int:
    """Connections waiting in ``server``'s backlog (closed ones included), taken off it."""
    server.setblocking(False)
    count = 0
    while True:
        try:
            server.accept()[0].close()
        except BlockingIOError:
            return count
        count += 1


def _options(endpoint: str) -> dict[str, Any]:
    return {"key": "x", "secret": "x", "client_kwargs": {"endpoint_url": endpoint}}


def test_s3_options_open_a_file_system_whose_own_retries_yield_to_botocore() -> None:
    options = with_timeouts("s3://bucket/lake", _options("http://127.0.0.1:9"))
    assert options is not None
    assert options["config_kwargs"]["retries"]["total_max_attempts"] == 2  # 1 + adp.io.retries
    fs, path = fsspec.core.url_to_fs("s3://bucket/lake", **options)
    assert isinstance(fs, BoundedS3FileSystem) and path == "bucket/lake"
    assert fs.retries == 1
    # what a worker receives: the class and the options, so the bound travels with them
    copy = pickle.loads(pickle.dumps(fs))
    assert isinstance(copy, BoundedS3FileSystem) and copy.retries == 1
    # options that leave botocore's retries alone keep s3fs's loop
    plain = fsspec.filesystem("s3", skip_instance_cache=True, **_options("http://127.0.0.1:9"))
    assert plain.retries == 5


def test_a_hung_endpoint_fails_within_botocores_bound_naming_it(
    hung_server: socket.socket, hung_endpoint: str
) -> None:
    with dask.config.set({"adp.io.connect-timeout": 0.5, "adp.io.read-timeout": 0.5}):
        options = with_timeouts("s3://bucket/k", _options(hung_endpoint))
    assert options is not None
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    fs.set_session()  # botocore's client (imports, no request) is not what the bound is on
    started = time.monotonic()
    with pytest.raises(Exception, match="Read timeout") as caught:
        fs.cat_file("bucket/k")
    elapsed = time.monotonic() - started
    # botocore: 2 attempts of 0.5 s (1 + adp.io.retries), one connection each; s3fs's own
    # loop around it would make 5 x 2 of them and take 5 x that plus backoff (~10 s).
    assert _connections_made(hung_server) == 2
    assert elapsed < 8, elapsed  # 1-2 s quiet; 4.4 s once under the whole suite's load
    assert hung_endpoint in str(caught.value)


def test_workers_get_the_bounded_file_system(client: Any) -> None:
    options = with_timeouts("s3://bucket/lake", _options("http://127.0.0.1:9"))
    fs, _ = fsspec.core.url_to_fs("s3://bucket/lake", **(options or {}))

    def seen(fs: Any) -> tuple[str, int]:
        return type(fs).__name__, fs.retries

    assert client.submit(seen, fs, pure=False).result(timeout=30) == ("BoundedS3FileSystem", 1)


# -- an S3 server that hangs mid-read ---------------------------------------------------------
_SERVER = (
    "import sys, time, logging\n"
    "logging.getLogger('werkzeug').setLevel(logging.ERROR)\n"
    "import moto.moto_server.threaded_moto_server as ms\n"
    "delay = float(sys.argv[2])\n"
    "class Slow(ms.DomainDispatcherApplication):\n"
    "    def __call__(self, environ, start_response):\n"
    "        if environ['REQUEST_METHOD'] == 'GET' and '.parquet' in environ['PATH_INFO']:\n"
    "            time.sleep(delay)\n"
    "        return super().__call__(environ, start_response)\n"
    "ms.DomainDispatcherApplication = Slow\n"
    "ms.ThreadedMotoServer(ip_address='127.0.0.1', port=int(sys.argv[1]), verbose=False).start()\n"
    "print('ready', flush=True)\n"
    "time.sleep(10**6)\n"
)


@pytest.fixture
def slow_s3(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """moto's S3 server in a process of its own (so that it can be stopped), answering
    each read of a data file 0.05 s late, holding a lake of 16 files: ``(server,
    endpoint, uri)``. The server is resumed and killed afterwards."""
    import s3fs

    from adp.bench.chaos_env import make_lake

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(port), "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        fs = s3fs.S3FileSystem(skip_instance_cache=True, **_options(endpoint))
        fs.mkdir("hang")
        lake = make_lake(tmp_path / "lake", 16, 5000)
        fs.put(str(lake) + "/", "hang/lake/", recursive=True)
        yield server, endpoint, "s3://hang/lake/"
    finally:
        server.send_signal(signal.SIGCONT)
        server.kill()
        server.wait()


@pytest.mark.slow
def test_reads_on_workers_fail_within_the_bound_when_s3_hangs_mid_read(
    slow_s3: tuple[subprocess.Popen[str], str, str],
) -> None:
    """SIGSTOP: the server's sockets stay open and nothing answers, as with a hung endpoint.
    With ADP's defaults (4 s to read, 2 attempts) a worker's read fails in ~9 s; with
    s3fs's loop around botocore's it took ~45 s."""
    from distributed import Client, LocalCluster

    import adp

    server, endpoint, uri = slow_s3
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        ddf = adp.read(uri, storage_options=with_timeouts(uri, _options(endpoint)))
        total = client.compute(ddf["a"].sum())
        time.sleep(0.5)  # reads are in flight
        assert not total.done()
        server.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(Exception, match="Read timeout") as caught:
            total.result(timeout=120)
        elapsed = time.monotonic() - started
    assert elapsed < 15, elapsed
    assert endpoint in str(caught.value)


@pytest.mark.slow
def test_a_job_whose_s3_server_hangs_mid_read_fails_naming_it(
    slow_s3: tuple[subprocess.Popen[str], str, str], tmp_path: Path
) -> None:
    """`adp run` stops with one line naming the endpoint, blaming no file and leaving
    nothing behind. (The timeouts are cut to 1 s here to keep the suite fast; the default
    bound on a worker's read is the test above.)"""
    from adp.bench.chaos_env import adp_env, debris, job_spec, staged_parts

    server, endpoint, uri = slow_s3
    state = tmp_path / "state"
    env = {
        **adp_env(state),
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "DASK_ADP__IO__CONNECT_TIMEOUT": "1",
        "DASK_ADP__IO__READ_TIMEOUT": "1",
        "DASK_ADP__IO__RETRIES": "0",
    }
    parent = tmp_path / "out"
    parent.mkdir()
    spec = job_spec(uri, str(parent / "scores"))
    spec["source"]["storage_options"] = _options(endpoint)
    spec["cluster"] = {"n_workers": 1, "threads_per_worker": 1}
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(spec))
    proc = subprocess.Popen(
        [*ADP, "run", str(job), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 180
    while staged_parts(parent) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None and staged_parts(parent) >= 1, "the job was not mid-read"
    server.send_signal(signal.SIGSTOP)
    started = time.monotonic()
    _, stderr = proc.communicate(timeout=300)
    elapsed = time.monotonic() - started
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1, stderr
    assert endpoint in errors[0] and "did not answer in time" in errors[0], errors[0]
    assert "corrupt" not in errors[0] and "Traceback (most recent call last)" not in stderr
    assert elapsed < 15, (elapsed, errors[0])
    assert not (parent / "scores").exists() and debris(parent, state) == []
