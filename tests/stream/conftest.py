"""Fixtures for the stream tests: the machine's Redis and NATS JetStream (a skip on a
developer's machine without them, a failure under CI=true), one in-process LocalCluster
reachable over TCP (so `adp stream` subprocesses can use it too), a fitted detector, its
training data and its registered version."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dask.dataframe as dd
import pytest
from ci_support import need_in_ci
from distributed import Client, LocalCluster
from stream_helpers import FEATURES, NATS_URL, REDIS_URL, Training, events_frame, nats_setup, unique


@pytest.fixture(scope="session")
def redis_client() -> Iterator[Any]:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as exc:  # any failure to reach it
        need_in_ci(f"Redis is not reachable at {REDIS_URL}: {exc}")
    yield client
    client.close()


@pytest.fixture
def redis_stream(redis_client: Any) -> Iterator[str]:
    """A unique stream key; it and every key it prefixes are deleted afterwards."""
    name = unique("adp-test")
    yield name
    keys = list(redis_client.scan_iter(match=f"{name}*"))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture(scope="session")
def nats_ok() -> str:
    try:
        nats_setup({})
    except Exception as exc:  # any failure to reach it
        need_in_ci(f"NATS JetStream is not reachable at {NATS_URL}: {exc}")
    return NATS_URL


@pytest.fixture(scope="session")
def stream_client() -> Iterator[Client]:
    """One worker thread pool in this process, on TCP, with ADP's metrics plugin."""
    from adp.observe.plugins import install

    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=False,
            protocol="tcp://",
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        # not the default client: later tests in this process must not score on it
        Client(cluster, set_as_default=False) as client,
    ):
        install(client, audit=False)
        yield client


@pytest.fixture(scope="session")
def training(stream_client: Client, tmp_path_factory: pytest.TempPathFactory) -> Training:
    """An isolation forest fitted on 3000 rows (also in Parquet) and registered."""
    import adp
    from adp.models.api import register

    frame = events_frame(3000, seed=1)[FEATURES]
    path = tmp_path_factory.mktemp("training") / "train.parquet"
    frame.to_parquet(path)
    with stream_client.as_current():
        detector = adp.create_detector("iforest", random_state=0, contamination=0.05).fit(
            dd.from_pandas(frame, npartitions=2)
        )
    version = register(detector, unique("stream-model"), source=str(path))
    return Training(frame, path, detector, version.ref)
