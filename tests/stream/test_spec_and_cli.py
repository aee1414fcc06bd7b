"""The stream spec (no services needed) and `adp stream`'s refusals: every mistake named by
its field, one line, no traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import pytest
import yaml
from click.testing import CliRunner

from adp.cli import main
from adp.errors import SpecError
from adp.stream.spec import StreamSpec

GOOD: dict[str, Any] = {
    "source": {"kind": "redis", "url": "redis://127.0.0.1:6379/0", "stream": "events"},
    "model": "sensors@3",
    "key": ["sensor"],
    "sinks": {"sql": {"url": "sqlite:///results.db", "table": "scores"}},
    "dead_letter": {"stream": "events-dead"},
}


def _with(**changes: Any) -> dict[str, Any]:
    spec = yaml.safe_load(yaml.safe_dump(GOOD))
    for path, value in changes.items():
        node = spec
        *parents, last = path.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return spec


def test_a_good_spec_loads_with_defaults_and_absolute_paths(tmp_path: Path) -> None:
    spec = StreamSpec.from_text(yaml.safe_dump(GOOD))
    assert spec.threshold.kind == "fitted" and spec.source.group == "adp"
    assert spec.sinks.sql is not None and spec.sinks.sql.url.startswith("sqlite:////")
    assert spec.sinks.sql.url.endswith("/results.db")
    with dask.config.set({"adp.stream.max-events": 77, "adp.stream.max-in-flight": 3}):
        assert spec.batch_settings()[0::2] == (77, 3)
    given = StreamSpec.from_dict(
        _with(batch={"max_events": 5, "max_wait_ms": 7, "max_in_flight": 1})
    )
    assert given.batch_settings() == (5, 7, 1)
    assert StreamSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sinks__sql__tabel": "x"}, "sinks.sql.tabel: unknown field"),
        (
            {"fit": {"source": {"uri": "x.parquet"}, "detector": {"name": "iforest"}}},
            "exactly one of 'model'",
        ),
        ({"model": None}, "exactly one of 'model'"),
        ({"threshold": {"kind": "quantile"}}, "kind 'quantile' needs 'q'"),
        ({"threshold": {"kind": "fixed"}}, "kind 'fixed' needs 'score'"),
        ({"threshold": {"kind": "spot", "q": 1.5}}, "threshold.q: Input should be less than 1"),
        ({"threshold": {"contamination": 0.9}}, "threshold.contamination"),
        ({"source__url": "nats://127.0.0.1:4222"}, "is not a redis URL"),
        ({"source__durable": "d"}, "'subject' and 'durable' are for NATS"),
        ({"sinks__sql__table": "drop table x"}, "not a plain SQL identifier"),
        ({"key": ["message_id"]}, "'message_id' is the result's own column"),
        ({"key": ["a", "a"]}, "key names columns more than once"),
        (
            {"batch": {"max_events": True}},
            "batch.max_events: Input should be a valid integer, got True",
        ),
        (
            {"batch": {"max_in_flight": 0}},
            "batch.max_in_flight: Input should be greater than or equal to 1",
        ),
        ({"sinks": {}}, "give 'sql' and/or 'stream'"),
        ({"dead_letter": None}, "dead_letter: Field required"),
        ({"source__kind": "mqtt"}, "source.kind: Input should be 'redis', 'nats' or 'kafka'"),
    ],
)
def test_mistakes_are_refused_naming_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match="stream spec is invalid") as info:
        StreamSpec.from_dict(_with(**changes))
    assert message in str(info.value)


def test_text_that_is_not_a_spec_is_refused() -> None:
    with pytest.raises(SpecError, match="not valid YAML"):
        StreamSpec.from_text("source: [unclosed")
    with pytest.raises(SpecError, match="expected a mapping at the top level, got list"):
        StreamSpec.from_text("- 1\n- 2\n")


def test_adp_stream_refuses_a_bad_spec_in_one_line_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_with(threshold={"kind": "spot"})))
    runner = CliRunner()
    for args in ([str(bad)], [str(tmp_path / "missing.yaml")]):
        result = runner.invoke(main, ["stream", *args])
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert "Traceback" not in result.output + result.stderr
    assert "kind 'spot' needs 'q'" in runner.invoke(main, ["stream", str(bad)]).stderr
