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
# # Streaming detection on Redis Streams
# Events arrive one at a time; ADP scores them in micro-batches on the Dask cluster with a
# model fitted on batch data, flags them against a threshold, writes one result per event
# and acknowledges each event only after its result is committed. This notebook produces
# sensor events into a Redis stream, runs `adp.stream.run_stream` over them twice (the
# model's fitted threshold, then an adaptive rolling quantile), and shows what was flagged
# and how the thresholds compare.
#
# Environment variables (the tests set them; the defaults suit a run by hand):
#
# - `ADP_SCHEDULER`: a scheduler address (default: a local cluster of worker processes)
# - `ADP_REDIS_URL`: the broker (default `redis://127.0.0.1:6379/0`)
# - `ADP_DATA_DIR`: where the training data and the results database are written
#   (default `data/notebooks`)

# %%
import json
import os
import uuid
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import redis
import sqlalchemy as sa

import adp
from adp.stream import run_stream

data_dir = Path(os.environ.get("ADP_DATA_DIR", "data/notebooks")).absolute() / "streaming"
data_dir.mkdir(parents=True, exist_ok=True)
redis_url = os.environ.get("ADP_REDIS_URL", "redis://127.0.0.1:6379/0")
client = adp.connect(os.environ.get("ADP_SCHEDULER") or None)
broker = redis.Redis.from_url(redis_url)
stream = f"notebook-sensors-{uuid.uuid4().hex[:8]}"
features = ["f0", "f1", "f2", "f3"]


def sensor_events(rows, seed, anomalies=0.0):
    """Gaussian readings of five sensors; a share of them shifted far out."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(features))), columns=features)
    shifted = rng.random(rows) < anomalies
    frame.loc[shifted, features] += 4.5
    frame["sensor"] = [f"s{i % 5}" for i in range(rows)]
    frame["row"] = np.arange(rows)
    frame["shifted"] = shifted
    return frame


training = data_dir / "training.parquet"
sensor_events(4000, seed=1)[features].to_parquet(training)
events = sensor_events(3000, seed=2, anomalies=0.02)
pipe = broker.pipeline(transaction=False)
for record in events.drop(columns="shifted").to_dict(orient="records"):
    pipe.xadd(stream, {"data": json.dumps(record)})
pipe.execute()
print(f"{broker.xlen(stream):,} events in the Redis stream {stream}")

# %% [markdown]
# ## One stream, the fitted threshold
# The spec fits an isolation forest on the training file before consuming, and flags with
# the exact global threshold of its contamination over that file: the threshold a batch
# job over the same data would use. Results go to a SQL table, one row per event.

# %%
results_db = f"sqlite:///{data_dir / 'results.db'}"


def spec(group, table, threshold):
    return {
        "name": f"notebook-{table}",
        "source": {"kind": "redis", "url": redis_url, "stream": stream, "group": group},
        "fit": {
            "source": {"uri": str(training)},
            "detector": {"name": "isolation_forest", "params": {"contamination": 0.02}},
            "random_state": 0,
        },
        "key": ["sensor", "row"],
        "threshold": threshold,
        "sinks": {"sql": {"url": results_db, "table": table}},
        "dead_letter": {"stream": f"{stream}-dead"},
        "batch": {"max_events": 500, "max_wait_ms": 50, "max_in_flight": 2},
    }


fitted = run_stream(spec("fitted", "fitted", {"kind": "fitted"}), client=client, until_idle=0.5)
print(fitted.summary())
assert fitted.stats.results == len(events) and fitted.stats.dead_letters == 0

# %% [markdown]
# ## The same events, an adaptive threshold
# A second consumer group reads the same events again; this time the threshold is the 98%
# quantile of the last 1,000 scores, starting from the training scores and moving after
# each micro-batch.

# %%
adaptive = run_stream(
    spec("adaptive", "adaptive", {"kind": "quantile", "q": 0.98, "window": 1000}),
    client=client,
    until_idle=0.5,
)
print(adaptive.summary())
assert adaptive.stats.results == len(events)

# %% [markdown]
# ## What was flagged
# Each result carries the event's key, its score, its flag and the threshold it was
# flagged with. The shifted events are the ground truth here.

# %%
engine = sa.create_engine(results_db)
results = {
    name: pd.read_sql_table(name, engine).merge(events[["row", "shifted"]], on="row")
    for name in ("fitted", "adaptive")
}
engine.dispose()
for name, rows in results.items():
    assert len(rows) == len(events) and rows["row"].is_unique
    flagged = rows[rows["is_anomaly"]]
    thresholds = rows["threshold"]
    print(
        f"{name}: {len(flagged)} of {len(rows):,} events flagged, "
        f"{int(flagged['shifted'].sum())} of {int(events['shifted'].sum())} shifted ones; "
        f"threshold {thresholds.min():.4g} to {thresholds.max():.4g}"
    )
results["fitted"].loc[results["fitted"]["is_anomaly"]].sort_values("score", ascending=False)[
    ["message_id", "sensor", "row", "score", "threshold", "shifted"]
].head(10)

# %%
fig, ax = plt.subplots(figsize=(10, 3.5))
rows = results["fitted"].sort_values("row")
ax.scatter(rows["row"], rows["score"], s=3, c=np.where(rows["shifted"], "red", "grey"))
ax.plot(rows["row"], rows["threshold"], color="black", label="fitted threshold")
adaptive_rows = results["adaptive"].sort_values("row")
ax.plot(
    adaptive_rows["row"], adaptive_rows["threshold"], color="blue", label="rolling 98% quantile"
)
ax.set_xlabel("event")
ax.set_ylabel("score")
ax.legend()
plt.show()

# %%
broker.delete(stream, f"{stream}-dead")
broker.close()
client.close()
