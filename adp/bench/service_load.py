"""``adp bench service``: the ADP service under load (issue 12, "load").

A real ``adp serve`` runs in a subprocess (:mod:`adp.bench.service_process`) on a
LocalCluster of its own (``--workers`` processes, ``--max-running`` jobs at once) over a
small Parquet lake in a scratch folder.
``jobs`` specs are posted to ``POST /jobs`` at a fixed rate from a thread pool (an open
loop: a slow answer does not delay the next submission). Half of them (``invalid_share``)
are invalid, in the ways of :data:`INVALID` in turn (an unknown detector,
``contamination: 2``, a missing ``source.uri``, an unknown field, a relative path, a
boolean for an integer, ...), and must be answered 422 with the field named in ``detail``;
the valid ones must be answered 202.
Then every accepted job is followed (``GET /jobs/{id}``) until it is terminal.

Reported: the counts, the terminal states, the submit latency (p50, p95, max, in ms), the
wall time, and resident memory before the load, at its peak and after it: of the API
process, of the service (the API process and its job driver process, which holds the
scheduler of the service's LocalCluster; the growth target applies to this) and of the
whole process tree (with the LocalCluster's nannies and workers). Before the load one
valid job runs to the end (``warmup``), so that the service's first-job imports are not
counted as growth. The targets of issue 12: every job
terminal, every invalid spec refused naming its field, p95 submit latency under 200 ms,
service RSS growth under 100 MB.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import click
import numpy as np

from adp.bench.measure import timed
from adp.bench.service_process import TreeRss, running_service
from adp.errors import BenchmarkError, ConfigError

__all__ = [
    "INVALID",
    "Submission",
    "bench_service",
    "plan",
    "service",
    "submit_at_rate",
    "wait_terminal",
]

#: The issue's targets: p95 submit latency (ms) and growth of the service's RSS (MB).
P95_TARGET_MS = 200.0
RSS_GROWTH_TARGET_MB = 100.0
MB = 1024 * 1024

Spec = dict[str, Any]


#: Marks a field that an invalid spec leaves out.
DROP = object()

#: The invalid specs, sent in turn: ``(name, field, value)``, the spec with ``field`` set
#: to ``value`` (or left out), which a refusal must name.
INVALID: tuple[tuple[str, str, Any], ...] = (
    ("unknown_detector", "detector.name", "no_such_detector"),
    ("contamination_2", "threshold.contamination", 2),
    ("missing_source_uri", "source.uri", DROP),
    ("unknown_field", "sauce", {"name": "ketchup"}),
    ("unknown_nested_field", "detector.paramz", {}),
    ("relative_path", "source.uri", "lake/relative"),
    ("bool_for_int", "fit.sample_rows", True),
    ("zero_top_k", "explain.top_k", 0),
    ("unknown_output_mode", "output.mode", "append"),
    ("string_for_bool", "profile", "yes"),
    ("empty_features", "source.features", []),
    ("missing_output", "output", DROP),
)


def _spoiled(spec: Spec, field: str, value: Any) -> Spec:
    """A copy of ``spec`` with the dotted ``field`` set to ``value`` (:data:`DROP`: removed)."""
    spec = copy.deepcopy(spec)
    *parents, leaf = field.split(".")
    part = spec
    for name in parents:
        part = part.setdefault(name, {})
    if value is DROP:
        del part[leaf]
    else:
        part[leaf] = value
    return spec


@dataclass
class Submission:
    """One ``POST /jobs``: what was sent, what came back, and how long it took."""

    index: int
    case: str  # "valid" or an :data:`INVALID` name
    field: str | None  # the field a refusal must name
    spec: Spec
    status: int = 0
    detail: str = ""
    job_id: str | None = None
    latency_ms: float = float("nan")
    lag_ms: float = 0.0  # how late it was sent, against the fixed rate

    @property
    def as_expected(self) -> bool:
        """A valid spec accepted (202, an id), an invalid one refused 422 naming its field."""
        if self.field is None:
            return self.status == 202 and self.job_id is not None
        return self.status == 422 and self.field in self.detail


def plan(jobs: int, lake: Path, out: Path, invalid_share: float = 0.5) -> list[Submission]:
    """``jobs`` submissions, ``invalid_share`` of them invalid (spread evenly, the
    :data:`INVALID` cases in turn; at 0.5 the odd-numbered ones).

    Every valid job writes its own output folder under ``out``.
    """
    from adp.bench.chaos_env import job_spec

    planned = []
    for i in range(jobs):
        spec = job_spec(str(lake), str(out / f"job-{i:04d}"), name=f"load-{i:04d}")
        spoil = math.floor(i * invalid_share)  # invalid ones before this one
        if math.floor((i + 1) * invalid_share) == spoil:
            planned.append(Submission(i, "valid", None, spec))
            continue
        case, field, value = INVALID[spoil % len(INVALID)]
        planned.append(Submission(i, case, field, _spoiled(spec, field, value)))
    return planned


def _post(http: Any, sub: Submission) -> None:
    with timed() as t:
        answer = http.post("/jobs", json=sub.spec)
    sub.latency_ms = t.seconds * 1000
    sub.status = answer.status_code
    try:
        body = answer.json()
    except ValueError:
        body = {"detail": answer.text}
    sub.detail = str(body.get("detail", "")) if isinstance(body, dict) else str(body)
    if answer.status_code == 202 and isinstance(body, dict):
        sub.job_id = str(body.get("id"))


def submit_at_rate(http: Any, planned: Sequence[Submission], rate: float) -> float:
    """Post every submission, the ``i``-th at ``i / rate`` s from the start, from a thread
    pool; return the wall seconds until the last answer."""
    threads = min(64, max(8, int(rate)))
    with timed() as t, ThreadPoolExecutor(threads, thread_name_prefix="adp-load") as pool:
        futures = []
        for sub in planned:
            due = t.started + sub.index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sub.lag_ms = max(0.0, (time.perf_counter() - due) * 1000)
            futures.append(pool.submit(_post, http, sub))
        for future in futures:
            future.result()
    return t.seconds


def wait_terminal(
    http: Any, job_ids: Sequence[str], timeout: float, poll: float = 0.5
) -> dict[str, dict[str, Any]]:
    """Follow ``job_ids`` (``GET /jobs/{id}``, oldest first) until every one is terminal or
    ``timeout`` s pass; return the last answer of each job that ended."""
    from adp.service.client import TERMINAL

    pending = list(job_ids)
    ended: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while pending:
        while pending:
            answer = http.get(f"/jobs/{pending[0]}")
            if answer.status_code != 200:
                raise BenchmarkError(
                    f"GET /jobs/{pending[0]} answered {answer.status_code}: {answer.text[:300]}"
                )
            job = answer.json()
            if job["state"] not in TERMINAL:
                break
            ended[pending.pop(0)] = job
        if pending:
            if time.monotonic() > deadline:
                break
            time.sleep(poll)
    return ended


def _ms(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    array = np.asarray(values, dtype=float)
    return {
        "p50": round(float(np.percentile(array, 50)), 1),
        "p95": round(float(np.percentile(array, 95)), 1),
        "max": round(float(array.max()), 1),
    }


def _memory(start: int, before: int, peak: int, after: int) -> dict[str, float]:
    """Resident memory in MB: at the start, before the load, its peak, after it, growth."""
    values = {"start": start, "before": before, "peak": peak, "after": after}
    return {
        **{k: round(v / MB, 1) for k, v in values.items()},
        "growth": round((after - before) / MB, 1),
    }


def bench_service(
    root: Path,
    *,
    jobs: int = 200,
    rate: float = 20.0,
    workers: int = 2,
    max_running: int = 2,
    timeout: float = 900.0,
    invalid_share: float = 0.5,
    warmup: bool = True,
    partitions: int = 4,
    rows: int = 1000,
) -> dict[str, Any]:
    """Load a real ``adp serve`` with ``jobs`` submissions, half of them invalid.

    Parameters
    ----------
    root : pathlib.Path
        An empty folder for the lake, the outputs, the service's state and its log.
    jobs : int, default 200
        Submissions.
    rate : float, default 20
        Submissions per second.
    workers : int, default 2
        Worker processes of the service's LocalCluster.
    max_running : int, default 2
        Jobs the service runs at once.
    timeout : float, default 900
        Seconds to wait, after the last submission, for every accepted job to end.
    invalid_share : float, default 0.5
        The share of invalid submissions (between 0 and 1).
    warmup : bool, default True
        Run one valid job to the end before the load and the first memory sample.
    partitions, rows : int
        Parquet files of the lake and rows in each.

    Returns
    -------
    dict
        Counts, states, latencies, wall time, memory, how the service stopped, the
        targets met and ``passed``; ``unexpected`` lists (at most 10) submissions whose
        answer was not the expected one.
    """
    import httpx

    from adp.bench.chaos_env import make_lake
    from adp.service.identity import issue_token

    if jobs < 1 or not rate > 0 or not 0 <= invalid_share <= 1:
        raise ConfigError(
            f"jobs={jobs}, rate={rate}, invalid_share={invalid_share}: give at least 1 job, "
            "a rate above 0 and a share between 0 and 1"
        )
    lake = make_lake(root / "lake", partitions, rows)
    out = root / "out"
    planned = plan(jobs, lake, out, invalid_share)
    with running_service(root, workers=workers, max_running=max_running) as (proc, url, stop):
        # the service made the secret at its start: sign with the same one
        token = issue_token("bench", ["analyst"], timedelta(hours=2), state_dir=root / "state")
        headers = {"Authorization": f"Bearer {token}"}
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        with (
            httpx.Client(base_url=url, headers=headers, timeout=60, limits=limits) as http,
            TreeRss(proc.pid) as rss,
        ):
            start = rss.sample()
            if warmup:
                first = plan(1, lake, out / "warmup")[0]
                _post(http, first)
                if first.job_id is None:
                    raise BenchmarkError(f"the warm-up job was refused: {first.detail}")
                wait_terminal(http, [first.job_id], timeout)
            before = rss.sample()
            rss.peak = before
            with timed() as wall:
                submit_seconds = submit_at_rate(http, planned, rate)
                accepted = [s.job_id for s in planned if s.job_id is not None]
                ended = wait_terminal(http, accepted, timeout)
            after = rss.sample()
            peak = rss.peak
    rejected = [s for s in planned if s.status == 422]
    states = Counter(job["state"] for job in ended.values())
    seconds = [job["timings"]["seconds"] for job in ended.values() if job["timings"]["seconds"]]
    by_case: dict[str, dict[str, int]] = {}
    for s in planned:
        tally = by_case.setdefault(s.case, {"sent": 0, "as_expected": 0})
        tally["sent"] += 1
        tally["as_expected"] += s.as_expected
    growth = after[1] - before[1]
    latency = _ms([s.latency_ms for s in planned])
    invalid = [s for s in planned if s.field is not None]
    targets = {
        "all_terminal": len(ended) == len(accepted),
        "valid_accepted": all(s.as_expected for s in planned if s.field is None),
        "invalid_rejected_with_field_named": all(s.as_expected for s in invalid),
        "p95_submit_under_200ms": (latency["p95"] or 0.0) < P95_TARGET_MS,
        "service_rss_growth_under_100mb": growth / MB < RSS_GROWTH_TARGET_MB,
    }
    return {
        "benchmark": "service",
        "jobs": jobs,
        "rate": rate,
        "workers": workers,
        "max_running": max_running,
        "submitted": sum(1 for s in planned if s.status),
        "valid": jobs - len(invalid),
        "invalid": len(invalid),
        "accepted": len(accepted),
        "rejected": len(rejected),
        "rejected_with_field_named": sum(1 for s in rejected if s.as_expected),
        "other_status": dict(Counter(s.status for s in planned if s.status not in (202, 422))),
        "terminal": len(ended),
        "states": dict(states),
        "cases": by_case,
        "submit_latency_ms": latency,
        "submit_latency_ms_valid": _ms([s.latency_ms for s in planned if s.field is None]),
        "submit_latency_ms_invalid": _ms([s.latency_ms for s in invalid]),
        "max_send_lag_ms": round(max(s.lag_ms for s in planned), 1),
        "submit_seconds": round(submit_seconds, 2),
        "wall_seconds": round(wall.seconds, 2),
        "job_seconds": _ms([1000 * x for x in seconds]) if seconds else None,
        "api_rss_mb": _memory(start[0], before[0], peak[0], after[0]),
        "service_rss_mb": _memory(start[1], before[1], peak[1], after[1]),
        "tree_rss_mb": _memory(start[2], before[2], peak[2], after[2]),
        "stop": stop,
        "unexpected": [
            {"index": s.index, "case": s.case, "status": s.status, "detail": s.detail[:300]}
            for s in planned
            if not s.as_expected
        ][:10],
        "targets": targets,
        # uvicorn re-raises SIGTERM once it has shut down: -15 is a clean exit too
        "passed": all(targets.values()) and not stop["sigkilled"] and not stop["children_left"],
    }


@click.command("service")
@click.option("--jobs", default=200, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--rate",
    default=20.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Submissions per second.",
)
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="Workers of the service's LocalCluster.",
)
@click.option(
    "--max-running",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="Jobs the service runs at once.",
)
@click.option(
    "--timeout",
    default=900.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds to wait for the accepted jobs to end.",
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Work in this (new) folder and keep it; default a temporary folder.",
)
@click.option(
    "--json-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the JSON result to this file.",
)
def service(
    jobs: int,
    rate: float,
    workers: int,
    max_running: int,
    timeout: float,
    keep: Path | None,
    json_out: Path | None,
) -> None:
    """Submit JOBS specs (half invalid) to a real `adp serve` at RATE per second; print one
    JSON object: counts, states, submit latency, wall time, the service's memory.

    Exits 1 when a target of issue 12 is missed: every job terminal, every invalid spec
    refused 422 naming its field, p95 submit latency under 200 ms, service RSS growth under
    100 MB.
    """
    run = partial(bench_service, jobs=jobs, rate=rate, workers=workers, max_running=max_running)
    if keep is not None:
        keep.mkdir(parents=True)
        result = run(keep, timeout=timeout)
    else:
        with tempfile.TemporaryDirectory(prefix="adp-bench-service-") as folder:
            result = run(Path(folder), timeout=timeout)
    text = json.dumps(result)
    click.echo(text)
    if json_out is not None:
        json_out.write_text(text + os.linesep)
    if not result["passed"]:
        missed = [name for name, met in result["targets"].items() if not met] or ["a clean stop"]
        click.echo(f"error: the service missed {', '.join(missed)}", err=True)
        sys.exit(1)
