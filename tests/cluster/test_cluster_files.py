"""The deployment files parse and point at what ADP provides."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_manifests_parse_and_preload_adp_plugins() -> None:
    kinds = {}
    for path in sorted(CLUSTER.rglob("*.yaml")):
        for doc in _docs(path):
            kinds.setdefault(doc.get("kind", path.name), []).append(doc)
    assert {"DaskCluster", "DaskAutoscaler", "DaskJob", "ServiceMonitor", "PrometheusRule"} <= set(
        kinds
    )
    cluster = kinds["DaskCluster"][0]
    args = cluster["spec"]["scheduler"]["spec"]["containers"][0]["args"]
    assert args[args.index("--preload") + 1] == "adp.observe.plugins"
    config = yaml.safe_load((CLUSTER / "dask.yaml").read_text())
    for module in config["distributed"]["scheduler"]["preload"]:
        assert hasattr(importlib.import_module(module), "dask_setup")


def test_the_alerts_select_the_job_label_every_adp_scheduler_is_scraped_under() -> None:
    # The ServiceMonitor names every scheduler's targets (the DaskCluster's and each
    # DaskJob's) by the Services' label `jobLabel` names; the alerts' job matchers must
    # match that name, or they would watch nothing.
    import re

    base = CLUSTER / "kubernetes" / "base"
    (monitor,) = _docs(base / "servicemonitor-adp-schedulers.yaml")
    (dask_cluster,) = _docs(base / "daskcluster-adp.yaml")
    (job,) = _docs(base / "jobs" / "daskjob-s3-lake.yaml")
    label = monitor["spec"]["jobLabel"]
    names = {dask_cluster["metadata"]["labels"][label], job["metadata"]["labels"][label]}
    assert names == {"adp"}
    rules = [
        r
        for d in _docs(CLUSTER / "monitoring" / "alerts.yaml")
        for g in d["spec"]["groups"]
        for r in g["rules"]
    ]
    matchers = [m for r in rules for m in re.findall(r'job\s*=~\s*"([^"]*)"', r["expr"])]
    assert matchers, "no alert selects ADP's scrape jobs"
    for pattern in matchers:
        assert all(re.fullmatch(pattern, name) for name in names), pattern


@pytest.mark.slow
def test_local_workers_and_pods_keep_freed_memory_for_reuse() -> None:
    # adp.connect starts its workers with adp.cluster.worker-environ over distributed's
    # pre-spawn environment (which must still apply), and the pods' config says the same.
    # In a fresh interpreter whose environment holds distributed's own default, as any
    # process that started a cluster before does (nannies write their pre-spawn values
    # into os.environ, and distributed lets the environment override the config).
    import json
    import os
    import subprocess
    import sys

    from adp.config import settings

    wanted = settings().cluster.worker_environ
    assert wanted["MALLOC_TRIM_THRESHOLD_"] == str(1 << 30)
    code = (
        "import json, os, adp\n"
        "if __name__ == '__main__':\n"
        "    keys = list(adp.settings().cluster.worker_environ) + ['OMP_NUM_THREADS']\n"
        "    with adp.connect(n_workers=1, dashboard_address='127.0.0.1:0') as c:\n"
        "        seen = c.run(lambda: {k: os.environ.get(k) for k in keys})\n"
        "    print(json.dumps(list(seen.values())))\n"
    )
    script = CLUSTER.parent / ".pytest-worker-environ.py"
    script.write_text(code)
    try:
        done = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"},
        )
    finally:
        script.unlink()
    assert done.returncode == 0, done.stderr
    for environ in json.loads(done.stdout.strip().splitlines()[-1]):
        assert environ == {**wanted, "OMP_NUM_THREADS": "1"}
    config = yaml.safe_load((CLUSTER / "dask.yaml").read_text())
    pods = config["distributed"]["nanny"]["pre-spawn-environ"]
    assert {k: pods[k] for k in wanted} == wanted
