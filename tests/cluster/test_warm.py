"""A LocalCluster ADP starts has imported the scoring stack on its workers when
``adp.connect`` returns."""

from __future__ import annotations

import sys

import dask
import pytest

import adp
from adp.cluster.warm import WARM_MODULES, warm_workers


def _imported(name: str) -> bool:
    return name in sys.modules


@pytest.mark.slow
def test_connect_returns_with_the_workers_warm_and_they_run_a_job_at_once(tmp_path) -> None:
    import numpy as np
    import pandas as pd

    for i in range(8):  # a job whose first tasks arrive right after connect returns
        pd.DataFrame(np.random.default_rng(i).normal(size=(500, 3)), columns=list("abc")).to_csv(
            tmp_path / f"part-{i}.csv", index=False
        )
    with adp.connect(n_workers=2, threads_per_worker=1, install_plugins=False) as client:
        workers = set(client.scheduler_info(n_workers=-1)["workers"])
        assert all(client.run(_imported, "adp.detect.fitting").values())
        det = adp.create_detector("hbos").fit(adp.read(str(tmp_path / "*.csv")))
        assert int(det.detect(adp.read(str(tmp_path / "*.csv")))["is_anomaly"].sum().compute())
        assert set(client.scheduler_info(n_workers=-1)["workers"]) == workers  # none lost


@pytest.mark.slow
def test_warming_imports_the_stack_on_every_worker_and_here() -> None:
    with (
        dask.config.set({"adp.cluster.warm-workers": False}),
        adp.connect(n_workers=2, threads_per_worker=1, install_plugins=False) as client,
    ):
        assert not any(client.run(_imported, "adp.detect.detection").values())
        done = warm_workers(client)
        assert sorted(done) == sorted(client.scheduler_info(n_workers=-1)["workers"])
        assert all(modules == list(WARM_MODULES) for modules in done.values())
        assert all(client.run(_imported, "adp.detect.detection").values())
