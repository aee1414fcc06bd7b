"""Fixtures of the notebook tests: a cluster started the way ``cluster/`` starts one, and a
runner that executes a jupytext notebook in a real kernel against it.

The cluster is a ``dask scheduler --preload adp.observe.plugins`` process and two ``dask
worker`` processes on 127.0.0.1 (random ports), with the pods' dask configuration
(``cluster/dask.yaml``, copied into a ``DASK_CONFIG`` folder as the image does) and ADP's
state (the scheduler's audit trail) in a temporary folder. Notebook kernels share that
state folder, as the clients of a team's cluster share its audit database.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jupytext
import nbclient
import psutil
import pytest
from notebook_support import NOT_INHERITED, Executed, NotebookCluster

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
DASK = str(Path(sys.executable).with_name("dask"))


def _stop(address: str | None, procs: list[subprocess.Popen[bytes]]) -> None:
    """Close the cluster as a client would, then terminate and, if need be, kill each tree.

    ``Client.shutdown`` closes the scheduler and tells the nannies not to restart their
    workers; SIGTERM to every process of each tree then ends them in a second or two
    (waiting for the ``dask`` processes to exit on their own took 5 to 20 s here), and
    SIGKILL ends whatever is left after 15 s.
    """
    tree: list[psutil.Process] = []
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            top = psutil.Process(proc.pid)
            tree += [top, *top.children(recursive=True)]
    if address is not None:
        from distributed import Client

        with (
            contextlib.suppress(Exception),
            Client(address, timeout=10, set_as_default=False) as client,
        ):
            client.shutdown()
    for process in tree:  # the nannies' worker processes too: a nanny waits for its own
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(tree, timeout=15)
    for leftover in alive:
        leftover.kill()
    psutil.wait_procs(alive, timeout=5)
    for proc in procs:
        proc.wait(timeout=5)  # reaped


@pytest.fixture(scope="session")
def notebook_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotebookCluster]:
    """``dask scheduler --preload adp.observe.plugins`` plus two ``dask worker`` processes."""
    root = tmp_path_factory.mktemp("notebook-cluster")
    config = root / "dask-config"
    config.mkdir()
    shutil.copy(REPO / "cluster" / "dask.yaml", config / "dask.yaml")  # as the image does
    state = root / "state"
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    # cluster/dask.yaml says /var/lib/adp, which the environment overrides
    env.update(DASK_CONFIG=str(config), DASK_ADP__STATE_DIR=str(state))
    scheduler_file = root / "scheduler.json"
    log = root / "cluster.log"
    out = log.open("wb")
    common = ["--scheduler-file", str(scheduler_file)]
    scheduler = [DASK, "scheduler", "--preload", "adp.observe.plugins", "--host", "127.0.0.1"]
    scheduler += ["--port", "0", "--dashboard-address", "127.0.0.1:0", *common]
    worker = [DASK, "worker", "--nworkers", "1", "--nthreads", "1", "--host", "127.0.0.1"]
    worker += ["--no-dashboard", "--local-directory", str(root / "workers"), *common]
    procs: list[subprocess.Popen[bytes]] = []
    address = None
    try:
        for command in (worker, worker, scheduler):  # the workers wait for the file
            procs.append(
                subprocess.Popen(command, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT)
            )
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            if procs[-1].poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the scheduler did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        time.sleep(0.2)  # written in one go; let it be closed
        info = json.loads(scheduler_file.read_text())
        address, dashboard = info["address"], int(info["services"]["dashboard"])
        from distributed import Client

        with Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
        yield NotebookCluster(address, f"http://127.0.0.1:{dashboard}/metrics", state, log)
    finally:
        _stop(address, procs)
        out.close()


@pytest.fixture
def run_notebook(notebook_cluster: NotebookCluster, tmp_path: Path) -> Callable[..., Executed]:
    """Execute ``notebooks/<name>.py`` in a fresh python3 kernel; ``env`` adds variables.

    The kernel runs in ``tmp_path`` with ``ADP_SCHEDULER`` (the cluster), ``ADP_DATA_DIR``
    (``tmp_path/data``) and the cluster's state folder; a failing cell fails the test with
    the cell's traceback (nbclient's ``CellExecutionError``).
    """

    def run(name: str, **env: str) -> Executed:
        notebook = jupytext.read(NOTEBOOKS / f"{name}.py")
        kernel_env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
        kernel_env.update(
            ADP_SCHEDULER=notebook_cluster.address,
            ADP_DATA_DIR=str(tmp_path / "data"),
            DASK_ADP__STATE_DIR=str(notebook_cluster.state),
        )
        kernel_env.update(env)
        started = time.monotonic()
        nbclient.NotebookClient(notebook, timeout=240, kernel_name="python3").execute(
            cwd=str(tmp_path), env=kernel_env
        )
        run = Executed(notebook, time.monotonic() - started)
        print(f"{name}: {run.seconds:.1f} s; cells:", run.cell_seconds())  # shown on failure
        return run

    return run
