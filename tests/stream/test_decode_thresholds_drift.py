"""Decoding messages, stream thresholds and drift statistics, without services."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from adp.stream.brokers.protocol import Message
from adp.stream.decode import PAYLOAD_LIMIT, DeadLetter, dead_letter_payload, decode
from adp.stream.drift import DriftMonitor, population_stability_index
from adp.stream.thresholds import FixedThreshold, RollingQuantile, SpotThreshold, gpd_quantile

FEATURES = ["a", "b"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty message"),
        (b"{oops", "not JSON: Expecting property name"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[1]", "not a JSON object: got an array"),
        (b'"text"', "not a JSON object: got a string"),
        (b"null", "not a JSON object: got null"),
        (b'{"b": 1, "k": "x"}', "missing feature 'a'"),
        (b'{"a": "1.5", "b": 1, "k": "x"}', "feature 'a' is not a number: '1.5'"),
        (b'{"a": false, "b": 1, "k": "x"}', "feature 'a' is not a number: False"),
        (b'{"a": 1, "b": null, "k": "x"}', "feature 'b' is null"),
        (b'{"a": 1, "b": NaN, "k": "x"}', "feature 'b' is not finite"),
        (b'{"a": 1, "b": 1e999, "k": "x"}', "feature 'b' is not finite"),
        (b'{"a": 1, "b": 1' + b"0" * 400 + b', "k": "x"}', "feature 'b' is not finite"),
        (b'{"a": 1, "b": 2}', "missing key 'k'"),
        (b'{"a": 1, "b": 2, "k": [1]}', "key 'k' is not a string or number: [1]"),
    ],
)
def test_each_bad_message_is_set_aside_with_its_reason(payload: bytes, reason: str) -> None:
    good = Message("1-0", b'{"a": 1, "b": 2.5, "k": "x", "extra": {"ignored": true}}')
    out = decode([good, Message("2-0", payload), good._replace(id="3-0")], FEATURES, ["k"])
    assert [d.message.id for d in out.dead] == ["2-0"]
    assert reason in out.dead[0].reason
    assert list(out.frame.index) == ["1-0", "3-0"] and [m.id for m in out.messages] == [
        "1-0",
        "3-0",
    ]
    assert out.frame[FEATURES].to_numpy().tolist() == [[1.0, 2.5], [1.0, 2.5]]
    assert list(out.frame["k"]) == ["x", "x"]


def test_missing_values_are_kept_for_a_model_that_imputes() -> None:
    messages = [
        Message("1", b'{"a": null, "b": 1}'),
        Message("2", b'{"a": NaN, "b": Infinity}'),
        Message("3", b'{"b": 1}'),  # absent is still a mistake, not a missing value
    ]
    out = decode(messages, FEATURES, impute=True)
    assert list(out.frame.index) == ["1", "2"]
    assert math.isnan(out.frame.loc["1", "a"]) and out.frame.loc["2", "b"] == math.inf
    assert [d.reason for d in out.dead] == ["missing feature 'a'"]


def test_dead_letters_keep_delivery_order_and_a_bounded_payload() -> None:
    messages = [
        Message("1", b'{"a": 1, "b": NaN}'),
        Message("2", b"nope"),
        Message("3", b'{"a": 1, "b": 2}'),
    ]
    assert [d.message.id for d in decode(messages, FEATURES).dead] == ["1", "2"]
    big = DeadLetter(Message("9", b"x" * (PAYLOAD_LIMIT + 10)), "not JSON")
    body = json.loads(dead_letter_payload(big, "redis:r#s"))
    assert body["truncated"] is True and len(body["data"]) == PAYLOAD_LIMIT
    assert (body["message_id"], body["reason"], body["source"]) == ("9", "not JSON", "redis:r#s")


def test_rolling_quantile_is_the_quantile_of_the_last_window() -> None:
    rng = np.random.default_rng(0)
    threshold = RollingQuantile(0.99, window=500, warmup=50)
    assert threshold.value == math.inf  # nothing seen: nothing flagged
    seen: list[float] = []
    for size in (30, 40, 300, 700, 1):
        batch = rng.gamma(2.0, size=size)
        threshold.update(batch, batch >= threshold.value)
        seen.extend(batch)
        expected = np.quantile(seen[-500:], 0.99) if len(seen) >= 50 else math.inf
        assert threshold.value == pytest.approx(expected, rel=1e-12)
    started = RollingQuantile(0.5, window=100, warmup=10, initial=np.arange(1000.0))
    assert started.value == pytest.approx(np.quantile(np.arange(900.0, 1000.0), 0.5))


def test_gpd_quantile_matches_the_tail_it_was_fitted_on() -> None:
    shape, scale, q = 0.2, 1.5, 1e-4
    excesses = stats.genpareto.rvs(shape, scale=scale, size=400_000, random_state=1)
    n = len(excesses) * 50  # the excesses are the top 2% of the scores
    expected = 3.0 + stats.genpareto.ppf(1 - q * n / len(excesses), shape, scale=scale)
    assert gpd_quantile(excesses, 3.0, q, n) == pytest.approx(expected, rel=0.05)
    exponential = stats.expon.rvs(size=400_000, random_state=2)  # shape 0
    assert gpd_quantile(exponential, 0.0, 1e-3, len(exponential)) == pytest.approx(
        -math.log(1e-3), rel=0.05
    )


def test_spot_places_the_threshold_at_the_risk_and_ignores_what_it_flags() -> None:
    rng = np.random.default_rng(3)
    normal = rng.exponential(size=20_000)
    spot = SpotThreshold(q=1e-3, level=0.95, window=20_000, warmup=100, initial=normal)
    assert spot.value == pytest.approx(-math.log(1e-3), rel=0.1)  # exp(1): P(X > z) = e^-z
    before = spot.value
    outliers = np.full(500, 50.0)
    spot.update(outliers, outliers >= spot.value)  # flagged: SPOT does not learn from them
    assert spot.value == before
    learner = SpotThreshold(q=1e-3, level=0.95, window=20_000, warmup=100, initial=normal)
    learner.update(outliers, np.zeros(500, dtype=bool))  # taken as normal: the tail moves
    assert learner.value > before * 2
    assert SpotThreshold(q=1e-3, warmup=100).value == math.inf
    fixed = FixedThreshold(0.7, "fitted")
    fixed.update(outliers, outliers >= 0.7)
    assert (fixed.value, fixed.kind) == (0.7, "fitted")


def test_psi_and_ks_tell_drift_from_noise() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(size=20_000)
    assert population_stability_index(reference, rng.normal(size=5000)) < 0.02
    assert population_stability_index(reference, rng.normal(1.0, size=5000)) > 0.2
    monitor = DriftMonitor(reference, "ks", window=2000, every=1000)
    assert monitor.observe(rng.normal(size=999)) is None  # not due yet
    check = monitor.observe(rng.normal(size=1001))
    assert check is not None and not check.drifted and check.scores == 2000
    check = monitor.observe(rng.normal(2.0, size=2000))
    assert check is not None and check.drifted and check.statistic < 0.001
    assert monitor.drifted
