"""The context parameters: the nested form, feature names, and one-line errors naming the
field (in Python and in a job spec)."""

from __future__ import annotations

import pytest

from adp.context import Context
from adp.errors import ConfigError, SpecError
from adp.jobs.spec import JobSpec

NESTED = {
    "by": "sensor_id",
    "time": "ts",
    "window": {"size": 12, "stats": ["mean", "std", "diff"]},
    "season": {"period": "1d"},
    "normalise": "robust",
}


def test_the_nested_form_round_trips_and_names_features() -> None:
    ctx = Context.from_spec(NESTED)
    assert ctx == Context(time="ts", by="sensor_id", window=12, season="1d")
    assert Context.from_spec(ctx.to_spec()) == ctx
    assert ctx.feature_names(["vibration"]) == [
        "vibration.diff_from_season",
        "vibration.roll_mean_12",
        "vibration.roll_std_12",
        "vibration.diff",
    ]
    plain = Context(time="t", raw=True)
    assert plain.feature_names(["a", "b"]) == ["a", "a.diff_from_median", "b", "b.diff_from_median"]
    assert ctx.period is not None and ctx.period.total_seconds() == 86_400


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"by": "s"}, "context.time"),
        ({"time": "ts", "season": {"period": "1x"}}, "context.season.period"),
        ({"time": "ts", "season": {"period": "-1d"}}, "context.season.period"),
        ({"time": "ts", "season": {"period": "1d", "bins": 0}}, "context.season.bins"),
        ({"time": "ts", "window": {"size": 1}}, "context.window.size"),
        ({"time": "ts", "window": {"size": 4, "stats": ["mean", "mode"]}}, "context.window.stats"),
        ({"time": "ts", "window": {"stats": ["mean"]}}, "context.window.size"),
        ({"time": "ts", "by": "ts"}, "context.by"),
        ({"time": "ts", "normalise": "zscore"}, "context.normalise"),
        ({"time": "ts", "seasons": "1d"}, "unknown fields ['seasons']"),
    ],
)
def test_bad_values_fail_in_one_line_naming_the_field(spec: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Context.from_spec(spec)
    message = str(info.value)
    assert field in message and "\n" not in message


def _job(context: object, **more: object) -> dict:
    return {
        "source": {"uri": "/tmp/lake", "key": ["sensor_id", "ts"], **more},
        "detector": {"name": "iforest"},
        "output": {"uri": "/tmp/out"},
        "context": context,
    }


def test_a_job_spec_carries_a_typed_context() -> None:
    spec = JobSpec.from_dict(_job(NESTED))
    assert spec.context is not None
    assert spec.context.to_context() == Context.from_spec(NESTED)
    assert JobSpec.from_dict(spec.to_dict()).context == spec.context


@pytest.mark.parametrize(
    ("context", "more", "expected"),
    [
        ({**NESTED, "season": {"period": "daily"}}, {}, "context.season.period"),
        ({**NESTED, "window": {"size": 12, "stats": ["avg"]}}, {}, "context.window.stats.0"),
        ({**NESTED, "by": "ts"}, {}, "by and context.time both name 'ts'"),
        ({"by": "sensor_id"}, {}, "context.time: Field required"),
        (NESTED, {"features": ["ts", "x"]}, "source.features names the context's"),
        ({**NESTED, "windows": 3}, {}, "context.windows: unknown field"),
        ({**NESTED, "season": {"period": "1d", "method": "loess"}}, {}, "context.season.method"),
    ],
)
def test_a_bad_context_section_fails_naming_the_field(
    context: object, more: dict, expected: str
) -> None:
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict(_job(context, **more))
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_a_job_spec_asks_for_stl_baselines() -> None:
    context = {**NESTED, "season": {"period": "1d", "method": "stl"}}
    spec = JobSpec.from_dict(_job(context))
    assert spec.context is not None
    assert spec.context.to_context() == Context.from_spec(context)
    assert spec.context.to_context() != Context.from_spec(NESTED)  # profile is the default


def test_a_registered_model_brings_its_own_context() -> None:
    data = _job(NESTED)
    data["detector"] = {"model": "sensors@1"}
    with pytest.raises(SpecError, match="carries the context it was fitted with"):
        JobSpec.from_dict(data)


ENCODED = {
    "categorical": {"columns": ["colour"], "top": 5},
    "text": {"columns": ["comment"], "components": 4},
}


def test_encodings_need_no_time_and_round_trip() -> None:
    ctx = Context.from_spec(ENCODED)
    assert ctx == Context(categorical=("colour",), text=("comment",), top=5, components=4)
    assert ctx.time is None and ctx.encodes and ctx.encoded_columns() == ["colour", "comment"]
    assert Context.from_spec(ctx.to_spec()) == ctx
    assert ctx.feature_names(["x"]) == ["x"]  # without time: the numeric columns as they are
    short = Context.from_spec({"categorical": ["colour"], "text": "auto", "time": "ts"})
    assert short.categorical == ("colour",) and short.text == "auto" and short.top == 20
    assert Context.from_spec(short.to_spec()) == short
    assert not Context(time="ts").encodes


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({}, "context.time"),
        ({"categorical": ["c"], "window": 4}, "context.time"),
        ({"categorical": "colour"}, "context.categorical"),
        ({"categorical": {"top": 3}}, "context.categorical.columns"),
        ({"categorical": {"columns": ["c"], "top": -1}}, "context.categorical.top"),
        ({"categorical": {"columns": ["c"], "components": 2}}, "unknown fields ['components']"),
        ({"text": {"columns": ["t"], "components": 0}}, "context.text.components"),
        ({"text": ["t", "t"]}, "context.text names a column twice"),
        ({"categorical": ["c"], "text": ["c"]}, "'c' is also in context.categorical"),
        ({"time": "ts", "categorical": ["ts"]}, "'ts' is the context's by or time column"),
        ({"categorical": ["c"], "raw": True}, "context.raw"),
    ],
)
def test_bad_encodings_fail_in_one_line_naming_the_field(spec: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Context.from_spec(spec)
    message = str(info.value)
    assert field in message and "\n" not in message


def test_a_job_spec_carries_encodings() -> None:
    spec = JobSpec.from_dict(_job({"categorical": "auto", "text": ["comment"]}))
    assert spec.context is not None and spec.context.time is None
    ctx = spec.context.to_context()
    assert ctx.categorical == "auto" and ctx.text == ("comment",)
    assert JobSpec.from_dict(spec.to_dict()).context == spec.context
    assert JobSpec.from_dict(_job({**NESTED, **ENCODED})).context.to_context() == (
        Context.from_spec({**NESTED, **ENCODED})
    )


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"by": "sensor_id"}, "context.time: Field required with by, window or season"),
        ({}, "time: name the time column"),
        ({"categorical": "colour"}, "context.categorical: expected a list of columns or auto"),
        ({"text": {"columns": ["", "b"]}}, "context.text.columns: expected a list of column"),
        ({"text": {"columns": ["t"], "components": 0}}, "context.text.components"),
        ({"categorical": ["c"], "text": ["c"]}, "'c' is also in context.categorical"),
    ],
)
def test_a_bad_encoding_section_fails_naming_the_field(context: dict, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict(_job(context))
    assert expected in str(info.value) and "\n" not in str(info.value)
