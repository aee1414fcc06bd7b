"""Chaos on storage: the S3 server stopped while a job reads from it, and a full disk
under the output.

The S3 server is moto's ``ThreadedMotoServer`` in a subprocess of its own, so that it can
be killed; the full disk is a 2 MiB tmpfs mounted under the bench's folder (this needs
root). Each job runs as ``adp run`` in a subprocess with its own LocalCluster, so what the
user sees is measured: the exit status and the error line.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from adp.bench.chaos_env import adp_env, debris, job_spec, make_lake, staged_parts
from adp.bench.measure import timed

__all__ = ["full_disk", "s3_stopped"]

ADP = [sys.executable, "-m", "adp.cli"]
_SERVER = (
    "import sys, time, logging\n"
    "logging.getLogger('werkzeug').setLevel(logging.ERROR)\n"
    "import moto.moto_server.threaded_moto_server as ms\n"
    "delay = float(sys.argv[2])\n"
    "class Slow(ms.DomainDispatcherApplication):\n"
    "    def __call__(self, environ, start_response):\n"
    "        if environ['REQUEST_METHOD'] == 'GET' and '.parquet' in environ['PATH_INFO']:\n"
    "            print('GET', flush=True)\n"
    "            time.sleep(delay)\n"
    "        return super().__call__(environ, start_response)\n"
    "ms.DomainDispatcherApplication = Slow\n"
    "ms.ThreadedMotoServer(ip_address='127.0.0.1', port=int(sys.argv[1]), verbose=False).start()\n"
    "print('ready', flush=True)\n"
    "time.sleep(10**6)\n"
)


class _Counter:
    """Counts the ``GET`` lines the server prints (reads of data files), in a thread."""

    def __init__(self, stream: Any) -> None:
        self.gets = 0
        self._stream = stream
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        for line in self._stream:
            if line.startswith("GET"):
                self.gets += 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _outcome(
    proc: subprocess.CompletedProcess[str] | subprocess.Popen[str], stderr: str
) -> dict[str, Any]:
    """What ``adp run`` showed: its exit status, its ``error:`` lines, whether it printed a
    Python traceback of its own, and how many lines its local workers' logs added."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return {
        "exit_code": proc.returncode,
        "error_lines": len(errors),
        "error": errors[-1] if errors else (lines[-1] if lines else None),
        "traceback": "Traceback (most recent call last)" in stderr,
        "worker_log_lines": len(lines) - len(errors),
    }


def s3_stopped(
    root: Path, *, partitions: int = 32, rows: int = 5000, read_delay: float = 0.05
) -> dict[str, Any]:
    """Read a lake from a moto S3 server that is killed once the first partition is scored:
    one error line naming the endpoint, exit 1, no output and no staging left.

    The server answers every read of a data file ``read_delay`` seconds late, so that the
    job is still reading when the first partition is staged."""
    import s3fs

    state = root / "state"
    env = {**adp_env(state), "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(port), str(read_delay)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        while server.stdout.readline().strip() != "ready":
            if server.poll() is not None:
                raise RuntimeError("moto's S3 server did not start")
        counter = _Counter(server.stdout)
        options = {"key": "x", "secret": "x", "client_kwargs": {"endpoint_url": endpoint}}
        fs = s3fs.S3FileSystem(**options)
        fs.mkdir("chaos")
        lake = make_lake(root / "lake", partitions, rows)
        fs.put(str(lake) + "/", "chaos/lake/", recursive=True)
        parent = root / "s3"
        parent.mkdir()
        spec = job_spec("s3://chaos/lake/", str(parent / "scores"))
        spec["source"]["storage_options"] = options
        spec["cluster"] = {"n_workers": 2, "threads_per_worker": 1}
        job = parent / "job.yaml"
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
        read_before_stop = staged_parts(parent)
        reads_before_stop = counter.gets
        server.send_signal(signal.SIGKILL)
        with timed() as failing:
            _, stderr = proc.communicate(timeout=300)
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
    result = _outcome(proc, stderr)
    left = debris(parent, state)
    absent = not (parent / "scores").exists()
    names_endpoint = bool(result["error"]) and f"127.0.0.1:{port}" in result["error"]
    return {
        "scenario": "s3_stopped",
        "partitions": partitions,
        "staged_when_stopped": read_before_stop,
        "reads_before_stop": reads_before_stop,
        "seconds_to_fail": failing.seconds,
        **result,
        "names_endpoint": names_endpoint,
        "output_absent": absent,
        "debris": left,
        "passed": bool(
            read_before_stop >= 1
            and result["exit_code"] == 1
            and result["error_lines"] == 1
            and not result["traceback"]
            and names_endpoint
            and absent
            and not left
        ),
    }


def full_disk(
    root: Path, *, size: str = "2m", partitions: int = 32, rows: int = 5000
) -> dict[str, Any]:
    """Write a job's output onto a ``size`` tmpfs it does not fit in: one error line about
    the full disk, exit 1, nothing of the job left on that disk."""
    state = root / "state"
    disk = root / "disk"
    disk.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        return {
            "scenario": "full_disk",
            "skipped": f"cannot mount a tmpfs: {mounted.stderr.strip()}",
            "passed": False,
        }
    try:
        lake = make_lake(root / "lake-disk", partitions, rows)
        spec = job_spec(str(lake), str(disk / "scores"))
        spec["cluster"] = {"n_workers": 2, "threads_per_worker": 1}
        job = root / "disk-job.yaml"
        job.write_text(yaml.safe_dump(spec))
        with timed() as failing:
            proc = subprocess.run(
                [*ADP, "run", str(job), "--no-progress"],
                capture_output=True,
                text=True,
                env=adp_env(state),
                timeout=300,
            )
        result = _outcome(proc, proc.stderr)
        left = sorted(p.name for p in disk.iterdir())
        used = os.statvfs(disk)
        used_bytes = (used.f_blocks - used.f_bfree) * used.f_frsize
        left += debris(disk, state)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
    says_full = bool(result["error"]) and "no space left" in result["error"]
    return {
        "scenario": "full_disk",
        "disk": size,
        "seconds_to_fail": failing.seconds,
        **result,
        "says_disk_full": says_full,
        "left_on_disk": left,
        "bytes_used_after": used_bytes,
        "passed": bool(
            result["exit_code"] == 1
            and result["error_lines"] == 1
            and not result["traceback"]
            and says_full
            and not left
        ),
    }
