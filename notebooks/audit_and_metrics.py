# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Audit trail and metrics on a shared cluster
# A scheduler started with `dask scheduler --preload adp.observe.plugins` counts ADP's
# work on its own `/metrics` endpoint (`adp_*` families, for Prometheus) and audits every
# task graph any client submits. Jobs add their own records (submitted, started, source
# read, output written, succeeded) to the same hash-chained trail. Here we run one job,
# read its figures off the scheduler's `/metrics`, and read and verify its audit records:
# what `adp audit show --job ID` and `adp audit verify` do, from Python.
#
# Environment variables (the tests set them; the defaults suit a run by hand):
#
# - `ADP_SCHEDULER`: the address of a scheduler with ADP's plugin (default: what
#   `adp.connect()` picks: `DASK_SCHEDULER_ADDRESS`, else a new local cluster, on which it
#   installs the plugin)
# - `ADP_DATA_DIR`: where the demo lake and the job's output are written (default
#   `data/notebooks`)
# - `ADP_METRICS_URL`: the scheduler's metrics endpoint (default: `/metrics` beside the
#   client's dashboard link)
# - `DASK_ADP__AUDIT__URL` or `DASK_ADP__STATE_DIR`: the audit trail (default
#   `<state-dir>/audit.db`). The scheduler and this notebook must name the same one: on a
#   team's cluster, a PostgreSQL URL

# %%
import os
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import dask
import matplotlib.pyplot as plt
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

import adp
from adp.jobs.demo_lake import generate
from adp.observe import AuditLog

data_dir = Path(os.environ.get("ADP_DATA_DIR", "data/notebooks")).absolute()
client = adp.connect(os.environ.get("ADP_SCHEDULER") or None)
metrics_url = os.environ.get("ADP_METRICS_URL") or urllib.parse.urljoin(
    client.dashboard_link, "/metrics"
)
has_plugin = client.run_on_scheduler(lambda dask_scheduler: "adp" in dask_scheduler.plugins)
assert has_plugin, "start the scheduler with --preload adp.observe.plugins"
print(f"scheduler {client.scheduler.address}, metrics at {metrics_url}")


# %%
def scrape() -> dict[str, float]:
    """The scheduler's adp_* samples, by sample name (no labels but histogram buckets)."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("adp_"):
            for s in family.samples:
                le = s.labels.get("le")
                samples[s.name + (f"[le={le}]" if le else "")] = s.value
    return samples


before = scrape()
print(
    f"{len(before)} adp_* samples; adp_rows_scored_total = {before['adp_rows_scored_total']:,.0f}"
)

# %% [markdown]
# ## Run a job with a known id

# %%
lake = generate(data_dir / "audited-lake", sensors=4, days=2, seed=3)
job_id = f"notebook-{uuid.uuid4().hex[:12]}"
spec = adp.JobSpec.from_dict(
    {
        "name": "audited-job",
        "source": {"uri": str(lake.path), "key": ["sensor_id", "ts"], "exclude": ["is_injected"]},
        "detector": {"name": "hbos"},
        "threshold": {"contamination": 0.02},
        "output": {"uri": str(data_dir / "audited-scores"), "mode": "overwrite"},
    }
)
job = adp.run_job(spec, client=client, show_progress=False, job_id=job_id)
print(f"job {job_id}: {job.rows:,} rows, {job.anomalies} flagged")

# %% [markdown]
# ## The job on `/metrics`
# Workers send their figures to the scheduler on the connection they already have, so the
# counts are exact; they arrive a moment after the tasks end. On a shared cluster other
# people's jobs count too: the differences below are at least this job's figures.

# %%
deadline = time.monotonic() + 30
while True:
    after = scrape()
    delta = {name: after[name] - before.get(name, 0.0) for name in after}
    if delta["adp_jobs_finished_total"] >= 1 and delta["adp_rows_scored_total"] >= job.rows:
        break
    assert time.monotonic() < deadline, f"the job's figures never reached /metrics: {delta}"
    time.sleep(0.2)
assert delta["adp_anomalies_flagged_total"] >= job.anomalies
assert delta["adp_jobs_started_total"] >= 1 and after["adp_audit_write_failures_total"] == 0
print(
    f"rows scored +{delta['adp_rows_scored_total']:,.0f}, "
    f"anomalies flagged +{delta['adp_anomalies_flagged_total']:,.0f}, "
    f"jobs finished +{delta['adp_jobs_finished_total']:,.0f}, "
    f"graphs submitted +{delta['adp_graphs_submitted_total']:,.0f}"
)

# %% [markdown]
# ## The job in the audit trail
# The job's own records (source `api`: this notebook) and the scheduler's records of the
# task graphs it submitted (tied to the job by a `dask.annotate(adp_job_id=...)`
# annotation) share one hash-chained trail; `verify()` walks the whole chain and checks
# its signed checkpoint, as `adp audit verify` does.
#
# The scheduler writes its records in the background, every half second, in the order the
# graphs arrived. So we submit one small annotated graph of our own after the job: once
# its record is in the trail, the records of every graph the job submitted are too.

# %%
probe = f"{job_id}-probe"
with dask.annotate(adp_job_id=probe):
    assert client.compute(dask.delayed(sum)([1, 2, 3])).result() == 6
with AuditLog(create=False) as log:
    deadline = time.monotonic() + 30
    while not log.records(job_id=probe):
        assert time.monotonic() < deadline, "the scheduler wrote no audit record for the probe"
        time.sleep(0.2)
    records = log.records(job_id=job_id)
    verified = log.verify()
trail = pd.DataFrame([r.to_dict() for r in records])
assert verified.ok, verified.reason
assert {"api", "scheduler"} <= set(trail["source"])
assert trail.loc[trail["event_type"] == "job.run", "outcome"].tolist() == ["started", "success"]
assert (trail["outcome"] != "failure").all()
print(
    f"{len(trail)} audit records for {job_id}; verify: OK, {verified.records_checked} "
    f"records checked (signed checkpoint at seq {verified.checkpoint_seq})"
)
trail[["seq", "time", "source", "event_type", "action", "outcome", "identity", "resource"]]

# %%
buckets = {
    float(name.split("le=")[1].rstrip("]")): value
    for name, value in after.items()
    if name.startswith("adp_partition_score_seconds_bucket")
}
edges = sorted(buckets)
cumulative = [buckets[e] for e in edges]  # Prometheus buckets count everything up to "le"
counts = [c - p for p, c in zip([0.0, *cumulative[:-1]], cumulative, strict=True)]
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5))
left.bar(range(len(edges)), counts, color="steelblue")
left.set_xticks(range(len(edges)), [f"{e:g}" for e in edges], rotation=60, fontsize=7)
left.set_xlabel("partition score time, seconds (upper bound)")
left.set_ylabel("partitions (since the scheduler started)")
trail.groupby(["source", "event_type"]).size().plot.barh(ax=right, color="darkorange")
right.set_xlabel("audit records of this job")
fig.tight_layout()
plt.show()

# %%
client.close()
