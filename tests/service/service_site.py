"""Helpers of the service tests: a started :class:`Service` on a cluster, with a small
Parquet lake, tokens, and an HTTP client of its API (the fixtures are in conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient

POLICY = """
roles:
  analyst:
    allow: ["jobs:submit", "data:read:{lake}/**", "data:write:{out}/**"]
  operator:
    allow: ["*"]
  outsider:
    allow: ["jobs:submit", "data:read:/nowhere/**", "data:write:/nowhere/**"]
"""


def write_lake(folder: Path, parts: int = 4, rows: int = 500, seed: int = 0) -> Path:
    """``parts`` Parquet files of ``rows`` rows: an ``id`` key, 3 features, 5% shifted."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(parts):
        X = rng.normal(size=(rows, 3))
        X[rng.random(rows) < 0.05] += 4.0
        frame = pd.DataFrame(X, columns=["a", "b", "c"])
        frame.insert(0, "id", np.arange(i * rows, (i + 1) * rows))
        frame.to_parquet(folder / f"part.{i}.parquet", index=False)
    return folder


def job_spec(lake: Path, out: Path, name: str = "svc", **extra: Any) -> dict[str, Any]:
    """A small valid scoring job over ``lake`` into ``out``."""
    spec: dict[str, Any] = {
        "name": name,
        "source": {"uri": str(lake), "features": ["a", "b", "c"], "key": ["id"]},
        "detector": {"name": "hbos"},
        "threshold": {"contamination": 0.05},
        "output": {"uri": str(out)},
    }
    spec.update(extra)
    return spec


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, every: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not true within {timeout} s: {predicate}")


class Site:
    """A started service, its paths, and helpers to talk to it as a given user."""

    def __init__(self, service: Any, http: TestClient, root: Path) -> None:
        self.service = service
        self.http = http
        self.root = root
        self.lake = root / "lake"
        self.out = root / "out"

    def token(self, sub: str, *roles: str, ttl: float = 3600) -> str:
        from adp.service.identity import issue_token

        return issue_token(sub, list(roles), timedelta(seconds=ttl))

    def headers(self, sub: str, *roles: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(sub, *roles)}"}

    def submit(self, spec: dict[str, Any], sub: str = "alice", *roles: str) -> Any:
        return self.http.post(
            "/jobs", json=spec, headers=self.headers(sub, *(roles or ("analyst",)))
        )

    def job(self, job_id: str, sub: str = "alice", *roles: str) -> dict[str, Any]:
        answer = self.http.get(
            f"/jobs/{job_id}", headers=self.headers(sub, *(roles or ("analyst",)))
        )
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def wait(self, job_id: str, timeout: float = 90.0) -> dict[str, Any]:
        ended = {"succeeded", "failed", "cancelled", "interrupted"}
        return dict(
            wait_for(
                lambda: (j := self.job(job_id, "ops", "operator"))["state"] in ended and j, timeout
            )
        )

    def audit(self) -> list[Any]:
        return list(self.service.audit_log.records())


def start_site(
    root: Path, client: Any, max_running: int = 2, policy: str = POLICY, driver: str = "thread"
) -> Site:
    """A service on ``client``'s cluster; jobs driven by threads of the test's process
    (fast to start) unless ``driver="process"`` (what ``adp serve`` does by default)."""
    from adp.config import settings
    from adp.service.api import create_app
    from adp.service.server import Service

    write_lake(root / "lake")
    policy_file = root / "policy.yaml"
    policy_file.write_text(policy.format(lake=root / "lake", out=root / "out"))
    options = settings().service.model_copy(
        update={"max_running": max_running, "policy": policy_file, "driver": driver}
    )
    service = Service.start(options, client=client)
    return Site(service, TestClient(create_app(service)), root)
