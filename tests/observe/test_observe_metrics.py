"""Figures, the metrics state and the scrape-time collector, without a cluster."""

from __future__ import annotations

import subprocess
import sys
import time

import dask
import pytest
from observe_helpers import require_tool
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from adp.errors import ConfigError
from adp.observe import events
from adp.observe.events import FIGURES, report, report_client
from adp.observe.metrics import (
    COUNTERS,
    HISTOGRAMS,
    AdpCollector,
    MetricsState,
    bind,
    register_collector,
    unbind,
)

EXPECTED_FAMILIES = {
    "adp_jobs_started",
    "adp_jobs_finished",
    "adp_jobs_failed",
    "adp_rows_read",
    "adp_rows_scored",
    "adp_anomalies_flagged",
    "adp_bytes_read",
    "adp_fit_seconds",
    "adp_partition_score_seconds",
    "adp_search_trials",
    "adp_audit_records",
    "adp_audit_write_failures",
    "adp_graphs_submitted",
    "adp_stream_events",
    "adp_stream_dead_letters",
    "adp_stream_anomalies",
    "adp_stream_batches",
    "adp_stream_drift_alerts",
    "adp_stream_batch_seconds",
    "adp_stream_lag_seconds",
}


def test_report_is_a_noop_outside_a_worker() -> None:
    import distributed  # noqa: F401  (imported, yet no worker: still a no-op)

    report(rows_scored=10, partition_score_seconds=0.1)
    assert report_client(None, jobs_started=1) is None
    # under the threaded scheduler too
    total = dask.compute(*[dask.delayed(report)(rows_scored=1) for _ in range(4)])
    assert total == (None,) * 4


def test_report_checks_names_and_values() -> None:
    with pytest.raises(ValueError, match="unknown ADP figure 'rows'"):
        report(rows=1)
    with pytest.raises(ValueError, match=">= 0"):
        report(rows_scored=-1)
    with pytest.raises(ValueError, match="finite"):
        report_client(None, fit_seconds=float("nan"))
    with pytest.raises(ConfigError, match=r"fit_seconds='soon' must be a finite number"):
        report_client(None, fit_seconds="soon")  # type: ignore[arg-type]


def test_report_is_cheap_outside_a_worker() -> None:
    n = 20_000
    start = time.perf_counter()
    for _ in range(n):
        report(rows_scored=1000, anomalies_flagged=3, partition_score_seconds=0.01)
    per_call = (time.perf_counter() - start) / n
    assert per_call < 50e-6, f"report() costs {per_call * 1e6:.1f} us outside a worker"


def test_state_counts_figures_exactly() -> None:
    state = MetricsState()
    for _ in range(3):
        state.add_figures({"rows_scored": 1000, "anomalies_flagged": 7, "worker": "tcp://w"})
    state.add_figures({"partition_score_seconds": 0.003})
    state.add_figures({"partition_score_seconds": 120.0})
    state.add_figures({"rows_scored": -5})  # malformed: rejected, not counted
    state.add_figures("garbage")
    state.inc("graphs_submitted")
    assert state.value("rows_scored") == 3000
    assert state.value("anomalies_flagged") == 21
    assert state.rejected == 2
    families = {f.name: f for f in state.families()}
    hist = {
        s.name + str(s.labels.get("le", "")): s.value
        for s in families["adp_partition_score_seconds"].samples
    }
    assert hist["adp_partition_score_seconds_bucket0.005"] == 1
    assert hist["adp_partition_score_seconds_bucket60.0"] == 1
    assert hist["adp_partition_score_seconds_bucket+Inf"] == 2
    assert hist["adp_partition_score_seconds_count"] == 2
    assert hist["adp_partition_score_seconds_sum"] == pytest.approx(120.003)


def exposition() -> str:
    registry = CollectorRegistry()
    register_collector(registry)
    register_collector(registry)  # idempotent: no "Duplicated timeseries"
    return generate_latest(registry).decode()


def test_collector_exposes_every_family_without_labels() -> None:
    state = MetricsState()
    state.add_figures({"rows_scored": 42, "partition_score_seconds": 0.2})
    owner = object()
    bind(owner, state)
    try:
        text = exposition()
    finally:
        unbind(state)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(families) == EXPECTED_FAMILIES
    for family in families.values():
        for sample in family.samples:
            assert set(sample.labels) <= {"le"}, sample
    rows = families["adp_rows_scored"].samples
    assert [(s.name, s.value) for s in rows] == [("adp_rows_scored_total", 42.0)]
    assert families["adp_fit_seconds"].type == "counter"
    assert families["adp_partition_score_seconds"].type == "histogram"
    assert {f"adp_{c}" for c in COUNTERS} | {f"adp_{h}" for h in HISTOGRAMS} == set(families)
    assert {f.removesuffix("_seconds") for f in FIGURES} <= {
        n.removeprefix("adp_").removesuffix("_seconds") for n in families
    }


def test_collector_reports_zeros_without_a_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("adp.observe.metrics._states", [])  # hide other tests' schedulers
    families = {f.name: f for f in text_string_to_metric_families(exposition())}
    assert families["adp_rows_scored"].samples[0].value == 0


def test_describe_names_the_families() -> None:
    names = {m.name for m in AdpCollector().describe()}
    assert names == EXPECTED_FAMILIES


def test_promtool_accepts_the_exposition() -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=exposition(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_events_module_imports_nothing_heavy() -> None:
    code = (
        "import sys, adp; before = set(sys.modules); import adp.observe.events, adp.observe; "
        "heavy = [m for m in ('distributed', 'sqlalchemy', 'pandas', 'prometheus_client') "
        "if m in sys.modules and m not in before]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert events.TOPIC == "adp-metrics"
