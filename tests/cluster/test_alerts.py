"""The alerts in ``cluster/monitoring/alerts.yaml``: valid for ``promtool check rules``, their
unit tests in ``alerts_test.yaml`` pass ``promtool test rules`` (and fail when an alert is
broken), and every metric they name is on a live scheduler's ``/metrics`` after a job."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from ci_support import need_in_ci
from prometheus_client.parser import text_string_to_metric_families

TESTS = Path(__file__).resolve().parents[1]
MONITORING = TESTS.parent / "cluster" / "monitoring"
RULES_FILE = "alerts.rules.yaml"  # the name alerts_test.yaml's rule_files expects

# Series Prometheus makes itself for every target or rule: never on a /metrics page.
PROMETHEUS_SERIES = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
        "ALERTS",
        "ALERTS_FOR_STATE",
    }
)

_TOKEN = re.compile(
    r"""
      "(?:[^"\\]|\\.)*" | '(?:[^'\\]|\\.)*' | `[^`]*`    # string literals
    | \d[\w.]*                                          # numbers and durations
    | [A-Za-z_:][\w:]*                                  # identifiers
    | \S                                                # one punctuation character
    """,
    re.VERBOSE,
)
_LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_KEYWORDS = _LABEL_LISTS | {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
_CLOSING = {"{": "}", "[": "]", "(": ")"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    tokens = _TOKEN.findall(expr)
    names: set[str] = set()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        after = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token in ("{", "[") or (token.lower() in _LABEL_LISTS and after == "("):
            i = _skip_group(tokens, i if token in ("{", "[") else i + 1)
            continue
        is_identifier = re.fullmatch(r"[A-Za-z_:][\w:]*", token) is not None
        is_operator = after == "(" or after.lower() in ("by", "without")
        if is_identifier and not is_operator and token.lower() not in _KEYWORDS:
            names.add(token)
        i += 1
    return names


def _skip_group(tokens: list[str], start: int) -> int:
    """The index just after the bracket that closes ``tokens[start]``."""
    opening, depth = tokens[start], 0
    for j in range(start, len(tokens)):
        depth += (tokens[j] == opening) - (tokens[j] == _CLOSING[opening])
        if depth == 0:
            return j + 1
    raise AssertionError(f"unbalanced {opening!r} in {' '.join(tokens)}")


def alert_rules() -> list[dict[str, Any]]:
    """The alerting rules of the PrometheusRule in alerts.yaml."""
    rule = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    return [r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]


def write_rules(folder: Path, rules: dict[str, Any] | None = None) -> Path:
    """Write ``spec`` of alerts.yaml (or ``rules``) as a plain rules file beside a copy of
    alerts_test.yaml in ``folder``; return the copy of the tests."""
    if rules is None:
        rules = {
            "groups": yaml.safe_load((MONITORING / "alerts.yaml").read_text())["spec"]["groups"]
        }
    (folder / RULES_FILE).write_text(yaml.safe_dump(rules, sort_keys=False))
    return Path(shutil.copy(MONITORING / "alerts_test.yaml", folder / "alerts_test.yaml"))


@pytest.fixture(scope="module")
def promtool(request: pytest.FixtureRequest) -> str:
    path = shutil.which("promtool")
    if path is None:
        need_in_ci(
            "promtool is not installed (Debian package 'prometheus': "
            "apt-get update && apt-get install -y prometheus)",
        )
    assert path is not None
    return path


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


# -- promtool -----------------------------------------------------------------------------
def test_promtool_accepts_the_rules(promtool: str, tmp_path: Path) -> None:
    write_rules(tmp_path)
    result = run(promtool, "check", "rules", RULES_FILE, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_alerts_pass(promtool: str, tmp_path: Path) -> None:
    tests = write_rules(tmp_path)
    result = run(promtool, "test", "rules", tests.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_test_and_a_quiet_one() -> None:
    alerts = {rule["alert"] for rule in alert_rules()}
    tests = yaml.safe_load((MONITORING / "alerts_test.yaml").read_text())
    assert tests["rule_files"] == [RULES_FILE]
    firing: set[str] = set()
    quiet_everywhere: list[set[str]] = []  # per test group with no alert expected to fire
    for group in tests["tests"]:
        checks = group["alert_rule_test"]
        firing |= {c["alertname"] for c in checks if c.get("exp_alerts")}
        if not any(c.get("exp_alerts") for c in checks):
            quiet_everywhere.append({c["alertname"] for c in checks})
    assert firing == alerts, "every alert needs a test where it fires"
    assert alerts in quiet_everywhere, "a healthy series must be checked against every alert"


def test_the_unit_tests_fail_when_the_alerts_never_fire(promtool: str, tmp_path: Path) -> None:
    spec = yaml.safe_load((MONITORING / "alerts.yaml").read_text())["spec"]
    for rule in (r for group in spec["groups"] for r in group["rules"]):
        rule["expr"] = "vector(1) == 0"
    tests = write_rules(tmp_path, spec)
    result = run(promtool, "test", "rules", tests.name, cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    failed = set(re.findall(r"alertname: (\w+)", result.stdout + result.stderr))
    assert failed == {rule["alert"] for rule in alert_rules()}


# -- the metrics the alerts name ----------------------------------------------------------
@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("increase(adp_jobs_failed_total[1h]) > 0", {"adp_jobs_failed_total"}),
        ('absent(up{job=~".*adp.*"})', {"up"}),
        ("a unless on(job, instance) b_total", {"a", "b_total"}),
        (
            'histogram_quantile(0.99, sum by (le) (rate(x_bucket{le!="+Inf"}[5m]))) '
            "/ ignoring(le) group_left(job) max without (instance) (y offset 10m) > bool 1e3",
            {"x_bucket", "y"},
        ),
        ("sum(rate(x_count[5m:1m])) by (job) and on() vector(1)", {"x_count"}),
    ],
)
def test_metric_names_are_read_from_expressions(expr: str, expected: set[str]) -> None:
    assert metric_names(expr) == expected


def _tiny_lake(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        frame = pd.DataFrame(rng.normal(size=(100, 2)), columns=["a", "b"])
        frame["seq"] = np.arange(100) + 100 * i
        frame.to_parquet(folder / f"part-{i}.parquet", index=False)
    return folder


def _samples(url: str) -> dict[str, float]:
    text = httpx.get(url, timeout=10).raise_for_status().text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.slow  # a first job on cold workers imports the detection stack there
def test_every_metric_an_alert_names_is_on_a_live_scheduler(client: Any, tmp_path: Path) -> None:
    from adp.jobs.runner import run_job
    from adp.jobs.spec import JobSpec

    named = {rule["alert"]: metric_names(rule["expr"]) for rule in alert_rules()}
    assert all(named.values()), f"an alert names no metric: {named}"
    url = client.dashboard_link.replace("/status", "/metrics")
    before = _samples(url).get("adp_jobs_finished_total", 0.0)
    spec = {
        "name": "alerts-metrics",
        "source": {"uri": str(_tiny_lake(tmp_path / "lake")), "key": ["seq"]},
        "detector": {"name": "ecod", "params": {}},
        "threshold": {"contamination": 0.05},
        "output": {"uri": str(tmp_path / "out")},
    }
    run_job(JobSpec.from_dict(spec), client=client, show_progress=False)

    deadline = time.monotonic() + 10
    while (samples := _samples(url)).get("adp_jobs_finished_total", 0.0) <= before:
        assert time.monotonic() < deadline, "the job never reached the scheduler's /metrics"
        time.sleep(0.1)
    missing = {
        alert: sorted(names - PROMETHEUS_SERIES - set(samples))
        for alert, names in named.items()
        if names - PROMETHEUS_SERIES - set(samples)
    }
    assert not missing, f"alerts name metrics that /metrics does not have: {missing}"
