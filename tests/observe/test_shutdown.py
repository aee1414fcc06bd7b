"""The scheduler plugin at shutdown: a script that ends without closing its client loses no
audit record and prints no traceback (the plugin's executor is gone by then)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adp.observe.audit import AuditLog

SCRIPT = textwrap.dedent(
    """
    import sys
    from distributed import Client, LocalCluster

    if __name__ == "__main__":
        cluster = LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"preload": ["adp.observe.plugins"]},
        )
        client = Client(cluster)
        for i in range(int(sys.argv[1])):  # one graph, so one audit record, each
            client.submit(pow, i, 2, key=f"square-{i}").result()
        print("submitted", flush=True)
        # no client.close(), no cluster.close(): the interpreter's exit closes them
    """
)


@pytest.mark.slow
def test_a_script_that_does_not_close_its_client_loses_no_audit_record(tmp_path: Path) -> None:
    script = tmp_path / "unclosed.py"
    script.write_text(SCRIPT)
    state = tmp_path / "state"
    env = {**os.environ, "DASK_ADP__STATE_DIR": str(state)}
    env.pop("DASK_ADP__AUDIT__URL", None)
    graphs = 40  # submitted faster than the 0.5 s flush: most are still queued at exit
    proc = subprocess.run(
        [sys.executable, str(script), str(graphs)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "submitted"
    assert "Traceback" not in proc.stderr and "Plugin call failed" not in proc.stderr, proc.stderr
    with AuditLog(state_dir=state) as log:
        records = [r for r in log.records() if r.event_type == "graph.submitted"]
        assert len(records) == graphs
        assert (
            sorted(r.details_data()["prefixes"].popitem()[0] for r in records)
            == ["square"] * graphs
        )
        assert log.verify().ok
