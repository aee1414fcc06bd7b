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
# # Submitting jobs to the ADP service
# The team's service (`adp serve`) runs jobs on its cluster: you submit a spec, get an id
# back at once, and come back for the state, the logs, the summary and the report. The
# service checks your token and its policy before anything reaches the cluster, and
# records who ran what. This notebook needs no Dask cluster of its own.
#
# Environment variables (the tests set them; the defaults suit a run by hand):
#
# - `ADP_SERVICE_URL`: the service (default `adp.service.url`, `http://127.0.0.1:8642`)
# - `ADP_SERVICE_TOKEN`: your bearer token, from `adp token issue --sub alice --role analyst`
#   (default `adp.service.token`, that is `DASK_ADP__SERVICE__TOKEN`)
# - `ADP_DATA_DIR`: where the demo lake and the job's output are written; the service's
#   workers must reach it (default `data/notebooks`)

# %%
import os
from pathlib import Path

import httpx
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import HTML
from prometheus_client.parser import text_string_to_metric_families

import adp
from adp.jobs.demo_lake import generate
from adp.service.client import ServiceClient

data_dir = Path(os.environ.get("ADP_DATA_DIR", "data/notebooks")).absolute()
jobs = ServiceClient(os.environ.get("ADP_SERVICE_URL"), token=os.environ.get("ADP_SERVICE_TOKEN"))
me = jobs.whoami()
print(f"signed in to {jobs.url} as {me['subject']} with roles {me['roles']}")

# %% [markdown]
# ## Submit, then wait
# The spec is validated here first (and relative paths resolved against this notebook's
# folder); `submit` returns the job's id as soon as the service has queued it.

# %%
lake = generate(data_dir / "service-lake", sensors=6, days=2, seed=5)
spec = {
    "name": "service-notebook",
    "source": {"uri": str(lake.path), "key": ["sensor_id", "ts"]},
    "detector": {"name": "isolation_forest", "params": {"random_state": 0}},
    "threshold": {"contamination": 0.03},
    "output": {"uri": str(data_dir / "service-scores"), "mode": "overwrite"},
    "evaluate": {"label": "is_injected", "kind": "anomaly_kind"},
    "report": {"time": "ts", "group": "sensor_id"},
}
job_id = jobs.submit(spec)
status = jobs.wait(job_id, timeout=300)
summary = status["summary"]
assert status["state"] == "succeeded", (status["state"], status["error"])
assert status["owner"] == me["subject"]
assert summary["rows"] == lake.rows and summary["anomalies"] >= 0.03 * lake.rows
print(
    f"job {job_id} {status['state']} in {status['timings']['seconds']:.1f} s: "
    f"{summary['rows']:,} rows scored, {summary['anomalies']} flagged, "
    f"precision {summary['evaluation']['precision']:.3f}"
)

# %%
listed = pd.DataFrame(jobs.jobs())
assert job_id in set(listed["id"])
listed[["id", "name", "owner", "state"]].head()

# %%
log = jobs.logs(job_id)
assert "succeeded" in log
print(log[-1500:])

# %% [markdown]
# ## The results
# The output is an ordinary ADP dataset (committed with its manifest), so `adp.read`
# opens it; here the local threads read it, no cluster needed.

# %%
scores = adp.read(str(data_dir / "service-scores")).compute()
assert len(scores) == summary["rows"] and int(scores["is_anomaly"].sum()) == summary["anomalies"]
hourly = scores.set_index("ts")["is_anomaly"].resample("h").sum()
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5))
left.hist(scores["score"], bins=60, log=True, color="grey")
left.axvline(summary["threshold"], color="red", label="threshold")
left.set_xlabel("score")
left.legend()
right.bar(hourly.index, hourly.values, width=1 / 24)
right.set_ylabel("flagged per hour")
fig.autofmt_xdate()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The service's own metrics and the job's report
# `/metrics` (no token needed) counts jobs by state and submissions by outcome, for the
# team's Prometheus.

# %%
text = httpx.get(f"{jobs.url}/metrics", timeout=10).text
samples = {
    (s.name, tuple(sorted(s.labels.items()))): s.value
    for family in text_string_to_metric_families(text)
    for s in family.samples
}
succeeded = samples[("adp_service_jobs", (("state", "succeeded"),))]
assert succeeded >= 1
print(f'adp_service_jobs{{state="succeeded"}} = {succeeded:g}')

# %%
report = jobs.report(job_id)
assert "<svg" in report
HTML(report)

# %%
jobs.close()
