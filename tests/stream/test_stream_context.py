"""A model fitted with a context, scored on a stream: each event's residual from its
entity's seasonal baseline is computed per event, and its score equals the batch score."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.dataframe as dd
import numpy as np
import orjson
import pandas as pd
import pytest
import sqlalchemy as sa
from stream_helpers import REDIS_URL, unique, xadd_all

import adp
from adp.errors import SpecError
from adp.stream.api import run_stream
from adp.stream.context_features import check_streamable, stream_inputs
from adp.stream.scoring import Payloads, decode_and_score

CONTEXT = {"by": "sensor", "time": "ts", "season": {"period": "1d"}}


def _fleet(days: int = 2, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2026-03-01", periods=288 * days, freq="5min")
    phase = 2 * np.pi * (ts.hour * 60 + ts.minute).to_numpy() / 1440.0
    frames = [
        pd.DataFrame(
            {
                "sensor": name,
                "ts": ts,
                "a": level + 4 * np.sin(phase) + rng.normal(0, 0.3, len(ts)),
                "b": 2 * level + 3 * np.cos(phase) + rng.normal(0, 0.3, len(ts)),
            }
        )
        for name, level in (("s1", 10.0), ("s2", 30.0), ("s3", 50.0))
    ]
    return pd.concat(frames, ignore_index=True)


def _fitted(client: Any, frame: pd.DataFrame, **context: Any) -> Any:
    with client.as_current():
        return adp.create_detector("iforest", random_state=0, context={**CONTEXT, **context}).fit(
            dd.from_pandas(frame, npartitions=3)
        )


def _batch_scores(client: Any, detector: Any, frame: pd.DataFrame) -> pd.Series:
    with client.as_current():
        scored = detector.detect(dd.from_pandas(frame, npartitions=5), key=["sensor", "ts"])
        return scored.compute().set_index(["sensor", "ts"])["score"]


def _event(row: Any, epoch: bool) -> bytes:
    ts = pd.Timestamp(row.ts)
    when: Any = ts.tz_localize("UTC").timestamp() if epoch else ts.isoformat()
    return orjson.dumps({"sensor": row.sensor, "ts": when, "a": row.a, "b": row.b})


def test_a_context_model_scores_events_as_the_batch_scores_rows(stream_client: Any) -> None:
    frame = _fleet()
    detector = _fitted(stream_client, frame)
    assert stream_inputs(detector) == (["a", "b"], ["sensor", "ts"])
    batch = _batch_scores(stream_client, detector, frame)
    # a shuffled slice of the rows, times as ISO text and as epoch seconds, and one bad time
    rows = frame.sample(400, random_state=1)
    payloads = [_event(r, epoch=i % 2 == 1) for i, r in enumerate(rows.itertuples())]
    payloads.insert(7, b'{"sensor": "s1", "ts": "yesterday", "a": 1.0, "b": 2.0}')
    scored = decode_and_score(Payloads(payloads), detector, ["sensor"])
    assert scored.dead == [(7, "context time 'ts' is not ISO 8601 text or Unix epoch seconds")]
    positions = scored.frame.index.to_numpy()
    assert sorted(positions.tolist()) == [i for i in range(401) if i != 7]
    # position p > 7 is row p - 1 of the slice
    order = [p - 1 if p > 7 else p for p in positions.tolist()]
    expected = batch.loc[list(zip(rows["sensor"].iloc[order], rows["ts"].iloc[order]))]
    got = scored.frame["score"].to_numpy()
    assert np.max(np.abs(got - expected.to_numpy())) <= 1e-12
    assert list(scored.frame["sensor"]) == list(rows["sensor"].iloc[order])


def test_a_context_a_stream_cannot_compute_is_refused_naming_the_field(
    stream_client: Any,
) -> None:
    frame = _fleet(days=1)
    windowed = _fitted(stream_client, frame, window={"size": 6, "stats": ["mean"]})
    with pytest.raises(SpecError, match=r"context\.window"):
        check_streamable(windowed, "m@1")
    seasonal = _fitted(stream_client, frame)
    check_streamable(seasonal, "m@1")
    with pytest.raises(SpecError, match="window: model m@1 computes its own context"):
        check_streamable(seasonal, "m@1", windows=True)


@pytest.mark.slow
def test_a_stream_fitted_with_a_context_runs_on_redis(
    stream_client: Any, redis_client: Any, tmp_path: Path
) -> None:
    frame = _fleet()
    lake = tmp_path / "train.parquet"
    frame.to_parquet(lake)
    stream = unique("adp-context")
    events = frame.sample(600, random_state=2).reset_index(drop=True)
    xadd_all(redis_client, stream, [_event(r, epoch=False) for r in events.itertuples()])
    db = tmp_path / "results.db"
    spec = {
        "name": "context",
        "source": {"kind": "redis", "url": REDIS_URL, "stream": stream},
        "fit": {
            "source": {"uri": str(lake), "features": ["a", "b"]},
            "detector": {"name": "iforest", "params": {"random_state": 0, "context": CONTEXT}},
        },
        "key": ["sensor", "ts"],
        "threshold": {"kind": "fitted", "contamination": 0.02},
        "sinks": {"sql": {"url": f"sqlite:///{db}", "table": "results"}},
        "dead_letter": {"stream": f"{stream}-dead"},
        "batch": {"max_events": 200, "max_wait_ms": 50},
    }
    try:
        result = run_stream(spec, client=stream_client, until_idle=0.5)
        assert (result.stats.results, result.stats.dead_letters) == (600, 0)
        results = pd.read_sql_table("results", sa.create_engine(f"sqlite:///{db}"))
        assert len(results) == 600
        assert results["score"].notna().all() and results["is_anomaly"].dtype == bool
    finally:
        redis_client.delete(*redis_client.scan_iter(match=f"{stream}*"))


def test_categorical_and_text_fields_are_encoded_as_the_batch_encodes_them(
    stream_client: Any,
) -> None:
    rng = np.random.default_rng(3)
    kind = rng.choice(["pump", "fan", "valve"], size=1500)
    frame = pd.DataFrame(
        {
            "row": np.arange(1500),
            "kind": kind,
            "x": pd.Series(kind).map({"pump": 1.0, "fan": 5.0, "valve": 9.0}).to_numpy()
            + rng.normal(0, 0.5, 1500),
            "note": rng.choice(["all fine", "checked ok", "loud grinding noise"], size=1500),
        }
    )
    context = {"categorical": ["kind"], "text": {"columns": ["note"], "components": 2}}
    with stream_client.as_current():
        detector = adp.create_detector("iforest", random_state=0, context=context).fit(
            dd.from_pandas(frame, npartitions=3), features=["x"]
        )
        batch = detector.decision_function(dd.from_pandas(frame, npartitions=2)).compute()
    assert stream_inputs(detector) == (["x"], ["kind", "note"])
    events = frame.sample(300, random_state=4)
    payloads = [
        orjson.dumps({"row": int(r.row), "kind": r.kind, "x": r.x, "note": r.note})
        for r in events.itertuples()
    ]
    payloads.append(orjson.dumps({"row": -1, "kind": "compressor", "x": 3.0, "note": "new"}))
    scored = decode_and_score(Payloads(payloads), detector, ["row"])
    assert scored.dead == []
    got = scored.frame.set_index("row")["score"]
    assert np.max(np.abs(got.loc[events["row"]].to_numpy() - batch.loc[events.index])) <= 1e-12
    assert np.isfinite(got.loc[-1])  # an unseen category scores, it does not fail
