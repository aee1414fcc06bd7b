"""1,000 job specs generated with Hypothesis (issue 18, item 7): mutations of a valid spec
(keys dropped, retyped or moved to the wrong level, unknown keys, random strings and numbers,
NaN, infinities, booleans and huge integers). Each either passes ``adp validate``'s checks
(:class:`JobSpec` and the pre-flight) or fails with exactly one ADP error: one line, bounded,
naming what is at fault; never another exception. No cluster starts, nothing is written."""

from __future__ import annotations

import copy
import math
import string
from pathlib import Path
from typing import Any

import dask.config
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from adp.errors import AdpError
from adp.jobs.preflight import preflight
from adp.jobs.spec import JobSpec

FIELDS = {
    "name": None,
    "profile": None,
    "source": ["uri", "format", "features", "exclude", "key", "columns", "options", "missing"],
    "detector": ["name", "params", "model"],
    "fit": ["sample_rows", "random_state", "strategy"],
    "threshold": ["contamination", "score"],
    "explain": ["top_k"],
    "evaluate": ["label", "kind"],
    "output": ["uri", "mode", "table"],
    "report": ["path", "time", "group"],
    "cluster": ["n_workers", "threads_per_worker", "memory_limit", "address"],
}
COLUMNS = ["a", "b", "c", "id", "label", "site"]
DETECTORS = ["hbos", "iforest", "lof", "knn", "ecod", "pca", "ensemble", "iforrest", "HBOS"]

#: Text without "/" or ".": a generated location stays inside the test's folder.
TEXT = st.text(alphabet=string.ascii_letters + string.digits + "_-: *?[", max_size=12)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2, 10**20, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.5, 1.5, -0.1]),
    TEXT,
    st.sampled_from(COLUMNS + DETECTORS + ["fail", "drop", "overwrite", "error", "upsert", ""]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(TEXT | st.sampled_from(COLUMNS), inner, max_size=3),
    ),
    max_leaves=6,
)
#: Locations relative to the test's folder (the working directory): the lake, a file of
#: it, globs, nothing, the folder itself, places inside the lake.
LOCATIONS = st.sampled_from(
    [
        "lake",
        "lake/part0.parquet",
        "lake/*",
        "lake/*.csv",
        "*",
        "",
        ".",
        "nowhere",
        "lake/scores",
        "out",
        "out/x",
        "lake/part0.parquet/x",
        "state",
        "file:lake",
        "sqlite:///db/x.db",
        "r.html",
        "lake/r.html",
    ]
)
COLUMN_LISTS = st.lists(st.sampled_from(COLUMNS + ["zz", "Label"]), max_size=4)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("generated")
    lake = root / "lake"
    lake.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        frame = pd.DataFrame(rng.normal(size=(50, 3)), columns=["a", "b", "c"])
        frame["id"] = np.arange(i * 50, (i + 1) * 50)
        frame["label"] = 0
        frame["site"] = "x"
        frame.to_parquet(lake / f"part{i}.parquet", index=False)
    return root


def _good(folder: Path) -> dict[str, Any]:
    return {
        "name": "generated",
        "source": {"uri": str(folder / "lake"), "key": ["id"], "exclude": ["label"]},
        "detector": {"name": "hbos", "params": {"n_bins": 10}},
        "fit": {"sample_rows": 50, "random_state": 0},
        "threshold": {"contamination": 0.05},
        "evaluate": {"label": "label"},
        "output": {"uri": str(folder / "out" / "scores")},
    }


@st.composite
def mutation(draw: Any) -> tuple[str, ...] | tuple[str, Any, ...]:
    section = draw(st.sampled_from(sorted(FIELDS)))
    keys = FIELDS[section]
    key = draw(st.sampled_from(keys)) if keys else None
    kind = draw(
        st.sampled_from(
            ["drop", "set", "set", "columns", "retype", "unknown", "nest", "detector", "where"]
        )
    )
    if kind == "where":
        where = draw(st.sampled_from([("source", "uri"), ("output", "uri"), ("report", "path")]))
        return ("set", *where, draw(LOCATIONS))
    if kind == "columns":
        return ("set", section, key, draw(COLUMN_LISTS))
    if kind == "detector":
        name = draw(st.sampled_from(DETECTORS))
        params = draw(
            st.dictionaries(
                st.sampled_from(
                    ["n_bins", "n_neighbors", "n_estimators", "contamination", "detectors", "zz"]
                ),
                SCALARS | COLUMN_LISTS | st.lists(st.sampled_from(DETECTORS), max_size=3),
                max_size=2,
            )
        )
        return ("set", "detector", None, {"name": name, "params": params})
    if kind == "unknown":
        return ("set", section, draw(TEXT), draw(VALUES))
    if kind == "nest":  # a whole section put where it does not belong
        other = draw(st.sampled_from(sorted(FIELDS)))
        return ("nest", section, other)
    return (kind, section, key, draw(VALUES))


def apply(spec: dict[str, Any], change: tuple[Any, ...]) -> None:
    kind, section = change[0], change[1]
    if kind == "nest":
        other = change[2]
        moved = copy.deepcopy(spec.get(other, {}))
        target = spec.get(section)
        if isinstance(target, dict):
            target[other] = moved
        else:
            spec[section] = {other: moved}
        return
    key, value = change[2], change[3]
    if key is None:  # a top-level field (or a whole section)
        if kind == "drop":
            spec.pop(section, None)
        elif kind == "retype":
            spec[section] = [spec.get(section)] if section in spec else str(value)
        else:
            spec[section] = value
        return
    node = spec.get(section)
    if not isinstance(node, dict):
        node = spec[section] = {}
    if kind == "drop":
        node.pop(key, None)
    elif kind == "retype" and key in node:
        old = node[key]
        node[key] = str(old) if not isinstance(old, str) else [old]
    else:
        node[key] = value


NAMES = (
    [*FIELDS, *(k for keys in FIELDS.values() if keys for k in keys)]
    + COLUMNS
    + ["job spec", "detector", "columns", "column", "file", "Parquet", "'"]
)


@pytest.mark.slow
@settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(changes=st.lists(mutation(), min_size=1, max_size=3))
def test_generated_specs_pass_or_fail_with_one_named_error(folder, monkeypatch, changes) -> None:
    import distributed

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a cluster or client was started")

    monkeypatch.setattr(distributed.LocalCluster, "__init__", refuse)
    monkeypatch.setattr(distributed.Client, "__init__", refuse)
    monkeypatch.chdir(folder)
    spec = _good(folder)
    for change in changes:
        apply(spec, change)
    with dask.config.set({"adp.state-dir": str(folder / "state"), "adp.io.retries": 0}):
        try:
            preflight(JobSpec.from_dict(spec))
            event("valid")
        except AdpError as exc:
            event(type(exc).__name__)
            message = str(exc)
            assert message and "\n" not in message and len(message) <= 500, message
            assert "Traceback" not in message
            assert any(name in message for name in NAMES), message
    assert not (folder / "out").exists()  # the pre-flight writes nothing
    assert sorted(p.name for p in (folder / "lake").iterdir()) == ["part0.parquet", "part1.parquet"]
