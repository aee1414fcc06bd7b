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
# # ADP quickstart
# Connect to a Dask cluster, read the demo lake, fit an isolation forest on a sample,
# score every partition in parallel, and look at what was flagged.
#
# `ADP_SCHEDULER` (set by the tests) points at an existing scheduler; without it a local
# cluster of worker processes is started. `ADP_DEMO_LAKE` says where the demo lake is.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt

import adp
from adp.jobs.demo_lake import generate

lake = Path(os.environ.get("ADP_DEMO_LAKE", "data/demo-lake"))
if not any(lake.glob("*.parquet")):
    generate(lake, sensors=10, days=3)

client = adp.connect(os.environ.get("ADP_SCHEDULER") or None)
client

# %%
ddf = adp.read(str(lake))
features = ["temperature", "pressure", "vibration", "current"]
print(f"{ddf.npartitions} partitions, columns: {list(ddf.columns)}")

# %%
detector = adp.create_detector("isolation_forest", contamination=0.03, random_state=0)
detector.fit(ddf, features=features, sample_rows=50_000)
scored = detector.detect(ddf, key=["sensor_id", "ts"])
result = scored.compute()
print(f"{len(result):,} rows scored, {int(result['is_anomaly'].sum()):,} flagged")

# %%
injected = ddf[["sensor_id", "ts", "is_injected"]].compute()
joined = result.merge(injected, on=["sensor_id", "ts"])
precision = joined.loc[joined["is_anomaly"], "is_injected"].mean()
recall = joined.loc[joined["is_injected"], "is_anomaly"].mean()
print(f"precision {precision:.3f}, recall {recall:.3f}")

# %%
sensor = result.loc[result["is_anomaly"], "sensor_id"].value_counts().index[0]
series = result[result["sensor_id"] == sensor].sort_values("ts")
fig, ax = plt.subplots(figsize=(9, 3))
ax.plot(series["ts"], series["score"], linewidth=0.7)
hits = series[series["is_anomaly"]]
ax.scatter(hits["ts"], hits["score"], color="red", s=10)
ax.set_title(f"sensor {sensor}: score over time, flagged in red")
plt.show()  # drawn inline in the notebook

# %%
client.close()
