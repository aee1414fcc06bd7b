"""The catalogue of bad inputs (issue 18, item 7): each case is a job spec (and the files it
makes) that a careless or hostile user could hand to ``adp``. Run as the user would, through
``adp validate`` and ``adp run`` (click's runner, in-process), every case must give:

- exit status 1 (2 for a usage error), and no cluster started;
- exactly one ``error:`` line on standard error, at most 2 lines and 500 characters, that
  names the field, file, column, table or endpoint at fault, and no traceback;
- nothing written: the case's folder and the source are as they were;
- for ``adp run``, exactly one audit record: the refused job (``job.refused``, outcome
  ``failure``, the printed error as its reason).

Cases that can only fail while reading the data (a corrupt data page, a cell that does not
parse) run on the session's cluster (:data:`LATE`): one named error, no output, and the
job's audit trail ends in ``failure``.

The 32 earlier cases of ``tests/io/test_bad_input.py`` (the Python API) and
``tests/jobs/test_validate.py`` are counted in :data:`EARLIER`; many are also here as specs.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.config
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from adp.jobs.cli import run, validate
from adp.observe.audit import AuditLog

ROOT = os.geteuid() == 0

#: The earlier bad-input cases (the issue counts 32), in these modules; many are here too.
EARLIER = {
    "tests/io/test_bad_input.py": "the Python API: adp.read, write_table, profiles",
    "tests/jobs/test_validate.py": "adp validate",
    "tests/jobs/test_preflight.py": "hung and dead endpoints, reports after a commit",
}
EARLIER_CASES = 32


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    """Two Parquet files: float features a, b, c; int id and label; string site."""
    folder = tmp_path_factory.mktemp("catalogue") / "lake"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        frame = pd.DataFrame(rng.normal(size=(100, 3)), columns=["a", "b", "c"])
        frame["id"] = np.arange(i * 100, (i + 1) * 100)
        frame["label"] = 0
        frame["kind"] = "none"
        frame["site"] = "x"
        frame.to_parquet(folder / f"part{i}.parquet", index=False)
    return folder


@dataclass
class Ctx:
    """What a case builds on: its own empty folder (the working directory) and the lake."""

    tmp: Path
    lake: Path
    s3: Any = None
    pg_url: str | None = None

    @property
    def out(self) -> str:
        return str(self.tmp / "out" / "scores")

    def good(self, **changes: Any) -> dict[str, Any]:
        """A valid spec, with dotted ``changes`` applied (``None`` deletes a key)."""
        spec: dict[str, Any] = {
            "name": "catalogue",
            "source": {"uri": str(self.lake), "key": ["id"], "exclude": ["label"]},
            "detector": {"name": "iforest", "params": {"n_estimators": 10}},
            "fit": {"sample_rows": 100},
            "output": {"uri": self.out},
        }
        for path, value in changes.items():
            *parents, last = path.split("__")
            node = spec
            for part in parents:
                node = node.setdefault(part, {})
            if value is None:
                node.pop(last, None)
            else:
                node[last] = value
        return spec

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def parquet_copy(self, name: str = "copy") -> Path:
        """A private copy of the lake (cases that damage a file)."""
        folder = self.tmp / name
        folder.mkdir()
        for f in sorted(self.lake.iterdir()):
            (folder / f.name).write_bytes(f.read_bytes())
        return folder

    def csv(self, name: str, text: str) -> str:
        return str(self.file(name, text))

    def on(self, uri: str, **changes: Any) -> dict[str, Any]:
        """A good spec reading ``uri`` with no key or exclusions."""
        return self.good(source={"uri": uri}, **changes)


Build = Callable[[Ctx], "dict[str, Any] | str | bytes"]


@dataclass(frozen=True)
class Case:
    """One bad input: how to build it, and what its error must name."""

    id: str
    build: Build
    names: str
    validate: bool = True  # also refused by ``adp validate`` (else ``adp run`` only)
    exit_code: int = 1
    needs: str | None = None  # a fixture: "s3", "pg_url"
    skip_root: bool = False  # root can read and write anywhere


def _bomb() -> str:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]")
    return "\n".join(lines) + "\nsource: {uri: x}\n"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncated_first(c: Ctx) -> dict[str, Any]:
    copy = c.parquet_copy()
    _truncate(copy / "part0.parquet")
    return c.good(source__uri=str(copy))


def _garbage_parquet(c: Ctx) -> dict[str, Any]:
    copy = c.tmp / "garbage"
    copy.mkdir()
    (copy / "part0.parquet").write_bytes(b"PAR1" + os.urandom(300) + b"PAR1")
    return c.good(source__uri=str(copy))


def _text_as_parquet(c: Ctx) -> dict[str, Any]:
    path = c.file("data/notes.parquet", "these are my notes, not Parquet\n")
    return c.on(str(path))


def _empty_parquet_file(c: Ctx) -> dict[str, Any]:
    path = c.file("data/empty.parquet", b"")
    return c.on(str(path))


def _empty_folder(c: Ctx) -> dict[str, Any]:
    (c.tmp / "nothing").mkdir()
    (c.tmp / "nothing" / "_SUCCESS").write_text("")
    return c.on(str(c.tmp / "nothing"))


def _dead_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def _sqlite(c: Ctx) -> str:
    url = f"sqlite:///{c.tmp / 'db' / 'metrics.db'}"
    (c.tmp / "db").mkdir(exist_ok=True)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        pd.DataFrame({"id": np.arange(50), "v": np.linspace(0, 1, 50)}).to_sql(
            "metrics", conn, index=False
        )
    engine.dispose()
    return url


def _sql_source(c: Ctx, table: str) -> dict[str, Any]:
    spec = c.good(source={"uri": _sqlite(c), "options": {"table": table, "index_col": "id"}})
    return spec


def _existing_output(c: Ctx) -> dict[str, Any]:
    folder = c.tmp / "out" / "scores"
    folder.mkdir(parents=True)
    (folder / "mine.csv").write_text("a,b\n1,2\n")
    return c.good()


def _unwritable_output(c: Ctx) -> dict[str, Any]:
    locked = c.tmp / "locked"
    locked.mkdir(mode=0o500)
    return c.good(output__uri=str(locked / "scores"))


def _unwritable_report(c: Ctx) -> dict[str, Any]:
    locked = c.tmp / "locked"
    locked.mkdir(mode=0o500)
    return c.good(report={"path": str(locked / "r.html")})


def _unreadable_source(c: Ctx) -> dict[str, Any]:
    path = c.file("data/secret.csv", "a,b\n1,2\n")
    path.chmod(0)
    return c.on(str(path))


def _unreadable_job(c: Ctx) -> str:
    return "UNREADABLE"


def _mixed_header(c: Ctx) -> dict[str, Any]:
    c.file("csvs/a.csv", "a,b\n1,2\n")
    return c.on(str(c.tmp / "csvs" / "*.csvx"))


def _s3_spec(c: Ctx, uri: str, options: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return c.good(source={"uri": uri, "storage_options": options}, **changes)


def _s3_no_credentials(c: Ctx) -> dict[str, Any]:
    bucket = c.s3.bucket()
    with c.s3.fs().open(f"{bucket}/lake/p.parquet", "wb") as f:
        pd.DataFrame({"id": [1, 2], "a": [0.1, 0.2]}).to_parquet(f)
    options = {
        "anon": False,
        "client_kwargs": {"endpoint_url": c.s3.endpoint},
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2},
    }
    return _s3_spec(c, f"s3://{bucket}/lake/", options)


def _s3_missing_bucket(c: Ctx) -> dict[str, Any]:
    return _s3_spec(c, "s3://no-such-bucket-catalogue/lake/", c.s3.options())


def _s3_missing_output_bucket(c: Ctx) -> dict[str, Any]:
    return c.good(
        output={
            "uri": "s3://no-such-out-bucket-catalogue/scores/",
            "storage_options": c.s3.options(),
        }
    )


def _pg_missing_table(c: Ctx) -> dict[str, Any]:
    return c.good(
        source={"uri": c.pg_url, "options": {"table": "no_such_table_cat", "index_col": "id"}}
    )


def _with_table_output(c: Ctx, table: str) -> dict[str, Any]:
    return c.good(output={"uri": f"sqlite:///{c.tmp / 'db' / 'out.db'}", "table": table})


S = "source"
CASES: list[Case] = [
    # -- the job file itself ---------------------------------------------------------------
    Case("yaml-syntax", lambda c: "source: {uri: [a, b\ndetector: x\n", "job.yaml"),
    Case("yaml-bomb", lambda c: _bomb(), "job.yaml"),
    Case("yaml-top-level-list", lambda c: "- source\n- detector\n", "job.yaml"),
    Case("yaml-top-level-scalar", lambda c: "just a string\n", "job.yaml"),
    Case("yaml-empty-file", lambda c: "", "job.yaml"),
    Case("yaml-binary-file", lambda c: b"\x00\x01\xff\xfe" + os.urandom(64), "job.yaml"),
    Case("yaml-python-tag", lambda c: "source: !!python/object/apply:os.system [ls]\n", "job.yaml"),
    Case("yaml-latin1", lambda c: "name: caf\xe9\n".encode("latin-1") + b"\xff\xfe", "job.yaml"),
    Case("yaml-tab-indent", lambda c: "source:\n\turi: x\n", "job.yaml"),
    Case("job-unreadable", _unreadable_job, "job.yaml", skip_root=True),
    Case("job-is-a-directory", lambda c: "DIRECTORY", "job.yaml"),
    Case("job-file-missing", lambda c: "MISSING", "job.yaml"),
    # -- top level -------------------------------------------------------------------------
    Case("unknown-top-level-key", lambda c: c.good(sourc={"uri": "x"}), "sourc"),
    Case("missing-source", lambda c: c.good(source=None), "source"),
    Case("missing-detector", lambda c: c.good(detector=None), "detector"),
    Case("missing-output", lambda c: c.good(output=None), "output", validate=False),
    Case("name-is-a-list", lambda c: c.good(name=["a", "b"]), "name"),
    Case("profile-yes", lambda c: c.good(profile="yes"), "profile"),
    Case("section-is-a-list", lambda c: c.good(fit=[1, 2]), "fit"),
    # -- source ----------------------------------------------------------------------------
    Case("source-is-a-string", lambda c: c.good(source="data/"), "source"),
    Case("source-uri-missing", lambda c: c.good(source__uri=None), "source.uri"),
    Case("source-uri-number", lambda c: c.good(source__uri=42), "source.uri"),
    Case(
        "source-unknown-key", lambda c: c.good(source__storag_options={}), "source.storag_options"
    ),
    Case("source-options-list", lambda c: c.good(source__options=["table", "x"]), "source.options"),
    Case("source-missing-policy", lambda c: c.good(source__missing="sometimes"), "source.missing"),
    Case("source-features-string", lambda c: c.good(source__features="a"), "source.features"),
    Case("source-features-twice", lambda c: c.good(source__features=["a", "a"]), "['a']"),
    Case("source-features-unknown", lambda c: c.good(source__features=["a", "nope"]), "nope"),
    Case("source-features-non-numeric", lambda c: c.good(source__features=["a", "site"]), "site"),
    Case("source-features-empty", lambda c: c.good(source__features=[]), "source.features"),
    Case("source-key-unknown", lambda c: c.good(source__key=["ident"]), "ident"),
    Case("source-key-twice", lambda c: c.good(source__key=["id", "id"]), "source.key"),
    Case("source-exclude-unknown", lambda c: c.good(source__exclude=["lable"]), "lable"),
    Case("source-columns-unknown", lambda c: c.good(source__columns=["a", "zz"]), "zz"),
    Case("source-format-unknown", lambda c: c.good(source__format="xls"), "source.format"),
    Case(
        "source-storage-options-list",
        lambda c: c.good(source__storage_options=["k"]),
        "storage_options",
    ),
    Case("source-missing-file", lambda c: c.on(str(c.tmp / "nowhere" / "d.parquet")), "nowhere"),
    Case(
        "source-glob-matches-nothing", lambda c: c.on(str(c.tmp / "no-*.parquet")), "no-*.parquet"
    ),
    Case("source-glob-wrong-suffix", _mixed_header, "*.csvx"),
    Case("source-empty-folder", _empty_folder, "nothing"),
    Case("source-outside-allowed-roots", lambda c: c.good(), "allowed roots"),
    Case("source-unreadable-file", _unreadable_source, "secret.csv", skip_root=True),
    Case("source-unknown-suffix", lambda c: c.on(c.csv("data/d.xls", "a,b\n1,2\n")), "d.xls"),
    # -- files -----------------------------------------------------------------------------
    Case("parquet-truncated", _truncated_first, "part0.parquet"),
    Case("parquet-garbage", _garbage_parquet, "part0.parquet"),
    Case("parquet-is-text", _text_as_parquet, "notes.parquet"),
    Case("parquet-empty-file", _empty_parquet_file, "empty.parquet"),
    Case("csv-duplicate-headers", lambda c: c.on(c.csv("d.csv", "a,b,a\n1,2,3\n")), "d.csv"),
    Case("csv-empty-file", lambda c: c.on(c.csv("e.csv", "")), "e.csv"),
    Case(
        "csv-feature-not-in-header",
        lambda c: c.on(c.csv("h.csv", "a,b\n1,2\n"), source__features=["a", "q"]),
        "q",
    ),
    Case("json-first-line-not-json", lambda c: c.on(c.csv("d.jsonl", "{oops\n")), "d.jsonl"),
    Case("json-first-line-array", lambda c: c.on(c.csv("d.jsonl", "[1, 2]\n")), "d.jsonl"),
    # -- detector --------------------------------------------------------------------------
    Case("detector-unknown", lambda c: c.good(detector__name="iforestt"), "iforestt"),
    Case("detector-unknown-param", lambda c: c.good(detector__params={"n_trees": 5}), "n_trees"),
    Case("detector-name-number", lambda c: c.good(detector={"name": 7}), "detector.name"),
    Case("detector-params-list", lambda c: c.good(detector__params=[1]), "detector.params"),
    Case("detector-name-and-model", lambda c: c.good(detector__model="m@1"), "detector"),
    Case("detector-empty", lambda c: c.good(detector={}), "detector"),
    Case("detector-unknown-key", lambda c: c.good(detector__nme="hbos"), "detector.nme"),
    Case("detector-model-unknown", lambda c: c.good(detector={"model": "nope-cat@1"}), "nope-cat"),
    Case(
        "detector-model-overflow",
        lambda c: c.good(detector={"model": "m1@99999999999999999999"}),
        "99999999999999999999",
    ),
    Case(
        "ensemble-unknown-member",
        lambda c: c.good(
            detector={"name": "ensemble", "params": {"detectors": ["hbos", "nosuch"]}}
        ),
        "nosuch",
    ),
    Case(
        "lof-neighbours-over-sample",
        lambda c: c.good(
            detector={"name": "lof", "params": {"n_neighbors": 30}}, fit__sample_rows=30
        ),
        "fit.sample_rows",
    ),
    # -- fit -------------------------------------------------------------------------------
    Case("sample-rows-true", lambda c: c.good(fit__sample_rows=True), "fit.sample_rows"),
    Case("sample-rows-one", lambda c: c.good(fit__sample_rows=1), "fit.sample_rows"),
    Case("sample-rows-zero", lambda c: c.good(fit__sample_rows=0), "fit.sample_rows"),
    Case("sample-rows-negative", lambda c: c.good(fit__sample_rows=-5), "fit.sample_rows"),
    Case("sample-rows-string", lambda c: c.good(fit__sample_rows="many"), "fit.sample_rows"),
    Case("sample-rows-fraction", lambda c: c.good(fit__sample_rows=10.5), "fit.sample_rows"),
    Case("random-state-string", lambda c: c.good(fit__random_state="seed"), "fit.random_state"),
    Case("fit-strategy-unknown", lambda c: c.good(fit__strategy="magic"), "fit.strategy"),
    Case("fit-unknown-key", lambda c: c.good(fit__rows=5), "fit.rows"),
    # -- threshold -------------------------------------------------------------------------
    Case(
        "threshold-score-nan",
        lambda c: c.good(threshold={"score": float("nan")}),
        "threshold.score",
    ),
    Case(
        "threshold-score-inf",
        lambda c: c.good(threshold={"score": float("inf")}),
        "threshold.score",
    ),
    Case(
        "contamination-over-one",
        lambda c: c.good(threshold={"contamination": 1.5}),
        "threshold.contamination",
    ),
    Case(
        "contamination-negative",
        lambda c: c.good(threshold={"contamination": -0.1}),
        "threshold.contamination",
    ),
    Case(
        "contamination-word",
        lambda c: c.good(threshold={"contamination": "lots"}),
        "threshold.contamination",
    ),
    Case(
        "threshold-both",
        lambda c: c.good(threshold={"contamination": 0.1, "score": 1.0}),
        "threshold",
    ),
    Case(
        "threshold-unknown-key", lambda c: c.good(threshold={"quantile": 0.9}), "threshold.quantile"
    ),
    # -- explain, evaluate, report, cluster ------------------------------------------------
    Case("explain-top-k-negative", lambda c: c.good(explain={"top_k": -1}), "explain.top_k"),
    Case("explain-top-k-bool", lambda c: c.good(explain={"top_k": True}), "explain.top_k"),
    Case("evaluate-label-missing", lambda c: c.good(evaluate={"label": "truth"}), "truth"),
    Case(
        "evaluate-kind-missing",
        lambda c: c.good(evaluate={"label": "label", "kind": "sort"}),
        "sort",
    ),
    Case("evaluate-unknown-key", lambda c: c.good(evaluate={"labl": "label"}), "evaluate.labl"),
    Case("report-group-missing", lambda c: c.good(report={"group": "sensor"}), "sensor"),
    Case("report-time-missing", lambda c: c.good(report={"time": "when"}), "when"),
    Case("report-path-folder", lambda c: c.good(report={"path": str(c.tmp)}), "report path"),
    Case(
        "report-path-parent-file",
        lambda c: c.good(report={"path": str(c.file("blocker", "x") / "r.html")}),
        "blocker",
    ),
    Case("report-path-remote", lambda c: c.good(report={"path": "s3://b/r.html"}), "s3://b/r.html"),
    Case("report-path-unwritable", _unwritable_report, "locked", skip_root=True),
    Case(
        "cluster-workers-negative", lambda c: c.good(cluster={"n_workers": -1}), "cluster.n_workers"
    ),
    Case(
        "cluster-workers-word", lambda c: c.good(cluster={"n_workers": "two"}), "cluster.n_workers"
    ),
    Case("cluster-unknown-key", lambda c: c.good(cluster={"workers": 2}), "cluster.workers"),
    # -- output ----------------------------------------------------------------------------
    Case(
        "output-is-the-source",
        lambda c: c.good(output={"uri": str(c.lake), "mode": "overwrite"}),
        "output",
    ),
    Case(
        "output-is-dot",
        lambda c: c.good(output={"uri": ".", "mode": "overwrite"}),
        "current directory",
    ),
    Case("output-inside-source", lambda c: c.good(output__uri=str(c.lake / "scores")), "output"),
    Case(
        "output-holds-source",
        lambda c: c.good(output={"uri": str(c.lake.parent), "mode": "overwrite"}),
        "output",
    ),
    Case("output-is-root", lambda c: c.good(output={"uri": "/", "mode": "overwrite"}), "'/'"),
    Case(
        "output-parent-is-file",
        lambda c: c.good(output__uri=str(c.file("afile", "x") / "scores")),
        "afile",
    ),
    Case("output-is-a-file", lambda c: c.good(output__uri=str(c.file("afile", "x"))), "afile"),
    Case("output-holds-data", _existing_output, "scores"),
    Case("output-mode-unknown", lambda c: c.good(output__mode="replace"), "output.mode"),
    Case("output-unknown-key", lambda c: c.good(output__url="x"), "output.url"),
    Case(
        "output-database-without-table",
        lambda c: c.good(output={"uri": f"sqlite:///{c.tmp}/o.db"}),
        "output.table",
    ),
    Case(
        "output-table-injection",
        lambda c: _with_table_output(c, "t; DROP TABLE x"),
        "t; DROP TABLE x",
    ),
    Case("output-unwritable", _unwritable_output, "locked", skip_root=True),
    Case(
        "output-link-local-endpoint",
        lambda c: c.good(
            output={
                "uri": "s3://b/scores/",
                "storage_options": {
                    "key": "k",
                    "secret": "s",
                    "client_kwargs": {"endpoint_url": "http://169.254.169.254"},
                },
            }
        ),
        "169.254.169.254",
    ),
    Case("output-outside-allowed-roots", lambda c: c.good(), "allowed roots"),
    # -- SQL -------------------------------------------------------------------------------
    Case("sql-table-missing", lambda c: _sql_source(c, "metric"), "metric"),
    Case(
        "sql-table-injection",
        lambda c: _sql_source(c, "metrics; DROP TABLE x"),
        "metrics; DROP TABLE x",
    ),
    Case(
        "sql-bad-driver",
        lambda c: c.good(
            source={"uri": "postgresql+nodriver://u@127.0.0.1/db", "options": {"table": "t"}}
        ),
        "nodriver",
    ),
    Case(
        "sql-unreachable-with-password",
        lambda c: c.good(
            source={
                "uri": f"postgresql+psycopg://adp:s3cret@127.0.0.1:{_dead_port()}/test",
                "options": {"table": "t"},
            }
        ),
        "127.0.0.1",
    ),
    Case(
        "sql-link-local-host",
        lambda c: c.good(
            source={"uri": "postgresql+psycopg://u@169.254.169.254/db", "options": {"table": "t"}}
        ),
        "169.254.169.254",
    ),
    Case("sql-postgres-table-missing", _pg_missing_table, "no_such_table_cat", needs="pg_url"),
    # -- S3 --------------------------------------------------------------------------------
    Case("s3-no-credentials", _s3_no_credentials, "s3://", needs="s3"),
    Case("s3-missing-bucket", _s3_missing_bucket, "no-such-bucket-catalogue", needs="s3"),
    Case(
        "s3-missing-output-bucket",
        _s3_missing_output_bucket,
        "no-such-out-bucket-catalogue",
        needs="s3",
    ),
    Case(
        "s3-endpoint-ftp",
        lambda c: _s3_spec(c, "s3://b/lake/", {"client_kwargs": {"endpoint_url": "ftp://h"}}),
        "ftp://h",
    ),
    Case(
        "s3-endpoint-link-local",
        lambda c: _s3_spec(
            c,
            "s3://b/lake/",
            {
                "key": "k",
                "secret": "s",
                "client_kwargs": {"endpoint_url": "http://169.254.169.254"},
            },
        ),
        "169.254.169.254",
    ),
]

#: Cases that need a setting around them.
SETTINGS: dict[str, Callable[[Ctx], dict[str, Any]]] = {
    "source-outside-allowed-roots": lambda c: {"adp.io.allowed-roots": [str(c.tmp / "out")]},
    "output-outside-allowed-roots": lambda c: {"adp.io.allowed-roots": [str(c.lake)]},
}


@pytest.fixture
def no_cluster(monkeypatch) -> None:
    """Starting a cluster or a client fails the test."""
    import distributed

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a cluster or client was started")

    monkeypatch.setattr(distributed.LocalCluster, "__init__", refuse)
    monkeypatch.setattr(distributed.Client, "__init__", refuse)


def _snapshot(*folders: Path) -> dict[str, int]:
    seen = {}
    for folder in folders:
        for path in folder.rglob("*"):
            if path.name in ("job.yaml", "state") or "state" in path.relative_to(folder).parts:
                continue
            try:
                seen[str(path)] = path.stat().st_size
            except OSError:
                seen[str(path)] = -1
    return seen


def _write_job(ctx: Ctx, made: dict[str, Any] | str | bytes) -> Path:
    job = ctx.tmp / "job.yaml"
    if made == "DIRECTORY":
        job.mkdir()
    elif made == "MISSING":
        pass
    elif made == "UNREADABLE":
        job.write_text(yaml.safe_dump(ctx.good()))
        job.chmod(0)
    elif isinstance(made, bytes):
        job.write_bytes(made)
    elif isinstance(made, str):
        job.write_text(made)
    else:
        job.write_text(yaml.safe_dump(made))
    return job


def check_refusal(result: Any, case: Case, secrets: tuple[str, ...] = ()) -> str:
    """The checks every refusal passes; returns the error line's message."""
    stderr = result.stderr
    assert result.exit_code == case.exit_code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2 and len(stderr) <= 500, stderr
    errors = [line for line in lines if line.startswith("error:") or line.startswith("Error:")]
    assert len(errors) == 1, stderr
    assert case.names in stderr, f"{case.names!r} not named in: {stderr}"
    for secret in secrets:
        assert secret not in result.output
    return errors[0].split(":", 1)[1].strip()


def _ctx(case: Case, request: Any, tmp_path: Path, lake: Path) -> Ctx:
    if case.skip_root and ROOT:
        pytest.skip("root reads and writes whatever the permissions say")
    ctx = Ctx(tmp=tmp_path, lake=lake)
    if case.needs == "s3":
        ctx.s3 = request.getfixturevalue("s3")
    if case.needs == "pg_url":
        ctx.pg_url = request.getfixturevalue("pg_url")
    return ctx


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_each_bad_input_is_one_named_refusal(
    case: Case, request, tmp_path, lake, monkeypatch, no_cluster
) -> None:
    ctx = _ctx(case, request, tmp_path, lake)
    monkeypatch.chdir(tmp_path)
    made = case.build(ctx)
    job = _write_job(ctx, made)
    state = tmp_path / "state"
    config = {"adp.state-dir": str(state), "adp.io.retries": 0}
    config.update(SETTINGS.get(case.id, lambda c: {})(ctx))
    before = _snapshot(tmp_path, lake)
    secrets = ("s3cret",)
    with dask.config.set(config):
        if case.validate:
            checked = CliRunner().invoke(validate, [str(job)])
            check_refusal(checked, case, secrets)
        result = CliRunner().invoke(run, [str(job), "--no-progress"])
        message = check_refusal(result, case, secrets)
        if case.exit_code == 1:
            with AuditLog(state_dir=state) as log:
                records = log.records()
            assert len(records) == 1, [r.to_dict() for r in records]
            record = records[0]
            assert (record.event_type, record.outcome) == ("job.refused", "failure")
            assert record.reason == message
            assert not any(s in str(record.to_dict()) for s in secrets)
    if job.is_file():
        job.chmod(0o600)
    assert _snapshot(tmp_path, lake) == before  # nothing written, nothing removed


def test_the_catalogue_has_at_least_80_distinct_cases() -> None:
    ids = [c.id for c in CASES] + [c.id for c in LATE]
    assert len(set(ids)) == len(ids)
    assert len(ids) >= 80, len(ids)  # without counting the earlier ones
    assert len(ids) + EARLIER_CASES >= 112


# -- cases found only while reading the data: on the session's cluster ---------------------


def _csv_lake(c: Ctx, bad_row: str) -> dict[str, Any]:
    folder = c.tmp / "csvlake"
    folder.mkdir()
    rows = "\n".join(f"{i},{i * 0.5},{i % 7}" for i in range(30_000))
    (folder / "a.csv").write_text("id,x,y\n" + rows + "\n")
    (folder / "b.csv").write_text("id,x,y\n" + rows + "\n" + bad_row + "\n")
    return c.good(source={"uri": str(folder), "key": ["id"]})


def _corrupt_page(c: Ctx) -> dict[str, Any]:
    folder = c.tmp / "pages"
    folder.mkdir()
    table = pa.table({"id": np.arange(4000), "a": np.random.default_rng(1).normal(size=4000)})
    pq.write_table(table, folder / "good.parquet")
    pq.write_table(table, folder / "bad.parquet", compression="snappy", data_page_size=1024)
    data = bytearray((folder / "bad.parquet").read_bytes())
    middle = len(data) // 3
    data[middle : middle + 200] = bytes(range(200))  # a page that does not decompress
    # the footer stays intact: the file's rows and schema look whole
    (folder / "bad.parquet").write_bytes(bytes(data))
    return c.good(source={"uri": str(folder), "key": ["id"]})


def _mixed_schemas(c: Ctx) -> dict[str, Any]:
    copy = c.parquet_copy()
    pd.DataFrame({"id": [500, 501], "a": ["x", "y"]}).to_parquet(copy / "part9.parquet")
    return c.good(source__uri=str(copy))


LATE: list[Case] = [
    Case("csv-non-numeric-cell", lambda c: _csv_lake(c, "30000,abc,1"), "b.csv"),
    Case("csv-extra-field", lambda c: _csv_lake(c, "30000,1.0,2,3,4"), "b.csv"),
    Case("parquet-corrupt-data-page", _corrupt_page, "bad.parquet"),
    Case("parquet-mixed-schemas", _mixed_schemas, "part9.parquet"),
]
#: Found by the pre-flight, which reads every file's footer (the first 256), before the run.
CAUGHT_BY_PREFLIGHT = {"parquet-mixed-schemas"}


@pytest.mark.slow
@pytest.mark.parametrize("case", LATE, ids=[c.id for c in LATE])
def test_bad_data_found_while_reading_is_named(
    case: Case, request, client, tmp_path, lake, monkeypatch
) -> None:
    ctx = _ctx(case, request, tmp_path, lake)
    monkeypatch.chdir(tmp_path)
    job = _write_job(ctx, case.build(ctx))
    state = tmp_path / "state"
    before = _snapshot(tmp_path, lake)
    address = client.scheduler.address
    workers = set(client.scheduler_info(n_workers=-1)["workers"])
    with dask.config.set({"adp.state-dir": str(state)}):
        result = CliRunner().invoke(run, [str(job), "--no-progress", "--scheduler", address])
        check_refusal(result, case)
        with AuditLog(state_dir=state) as log:
            records = list(log.records())
    runs = [r for r in records if r.event_type == "job.run"]
    if case.id in CAUGHT_BY_PREFLIGHT:  # refused before any cluster work: one record
        assert not runs and [r.event_type for r in records] == ["job.refused"]
    else:
        assert runs and runs[-1].outcome == "failure"
    assert _snapshot(tmp_path, lake) == before
    assert set(client.scheduler_info(n_workers=-1)["workers"]) == workers  # no worker died


# -- a handful through a real ``adp`` process -----------------------------------------------

SUBPROCESS = ["yaml-bomb", "output-is-the-source", "sql-unreachable-with-password"]


@pytest.mark.slow
@pytest.mark.parametrize("case_id", SUBPROCESS)
def test_refusals_in_a_real_adp_process(case_id, tmp_path, lake) -> None:
    import subprocess
    import sys

    case = next(c for c in CASES if c.id == case_id)
    ctx = Ctx(tmp=tmp_path, lake=lake)
    job = _write_job(ctx, case.build(ctx))
    state = tmp_path / "state"
    env = {**os.environ, "DASK_ADP__STATE_DIR": str(state), "DASK_ADP__IO__RETRIES": "0"}
    before = _snapshot(tmp_path, lake)
    for command in ("validate", "run"):
        proc = subprocess.run(
            [sys.executable, "-m", "adp.cli", command, str(job)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env=env,
        )
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1, proc.stderr
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        assert case.names in lines[0] and len(proc.stderr) <= 500
        assert "Traceback" not in proc.stderr + proc.stdout and "s3cret" not in proc.stderr
    with AuditLog(state_dir=state) as log:
        records = log.records()
    assert [(r.event_type, r.outcome) for r in records] == [("job.refused", "failure")]
    assert _snapshot(tmp_path, lake) == before


# -- the refusal's audit record and the one pre-flight of ``run_job`` -----------------------


def _refusals(state: Path) -> list[Any]:
    with AuditLog(state_dir=state) as log:
        return log.records()


def test_run_job_checks_before_connecting_and_audits_the_refusal(no_cluster, tmp_path, lake):
    from adp.errors import DataError
    from adp.jobs.runner import run_job
    from adp.jobs.spec import JobSpec

    ctx = Ctx(tmp=tmp_path, lake=lake)
    state = tmp_path / "state"
    spec = JobSpec.from_dict(ctx.good(evaluate={"label": "truth"}))
    with dask.config.set({"adp.state-dir": str(state)}):
        with pytest.raises(DataError, match=r"evaluate\.label names \['truth'\]") as err:
            run_job(spec, show_progress=False)
        (record,) = _refusals(state)
    assert (record.event_type, record.outcome, record.source) == ("job.refused", "failure", "api")
    assert record.reason == str(err.value) and record.resource == str(lake)
    assert record.details_data() == {"name": "catalogue", "error": "DataError"}


def test_a_guard_refusal_without_the_preflight_is_audited_once(no_cluster, tmp_path, lake):
    from adp.errors import ConfigError
    from adp.jobs.runner import run_job
    from adp.jobs.spec import JobSpec

    ctx = Ctx(tmp=tmp_path, lake=lake)
    state = tmp_path / "state"
    spec = JobSpec.from_dict(ctx.good(output={"uri": str(lake), "mode": "overwrite"}))
    with dask.config.set({"adp.state-dir": str(state)}):
        with pytest.raises(ConfigError):
            run_job(spec, show_progress=False, check=False)  # the sink's own check refuses
        assert [(r.event_type, r.outcome) for r in _refusals(state)] == [("job.refused", "failure")]
    assert sorted(p.name for p in lake.iterdir()) == ["part0.parquet", "part1.parquet"]


def test_adp_run_runs_the_preflight_once(no_cluster, tmp_path, lake, monkeypatch):
    import adp.jobs.preflight
    import adp.jobs.runner
    from adp.errors import SpecError

    calls = []

    def counted(*args: Any, **kwargs: Any) -> None:
        calls.append(kwargs.get("report_path"))
        raise SpecError("stopped by the test after the pre-flight")

    monkeypatch.setattr(adp.jobs.runner, "preflight", counted)
    monkeypatch.setattr(adp.jobs.preflight, "preflight", counted)
    ctx = Ctx(tmp=tmp_path, lake=lake)
    job = _write_job(ctx, ctx.good())
    with dask.config.set({"adp.state-dir": str(tmp_path / "state")}):
        result = CliRunner().invoke(run, [str(job), "--report", str(tmp_path / "r.html")])
    assert result.exit_code == 1 and "stopped by the test" in result.stderr
    assert calls == [str(tmp_path / "r.html")]  # once, with the report path to check


def test_a_refused_search_job_is_audited_once(no_cluster, tmp_path, lake):
    from adp.jobs.cli import search

    ctx = Ctx(tmp=tmp_path, lake=lake)
    spec = ctx.good(search={"label": "truth", "max_trials": 2}, detector=None, output=None)
    job = _write_job(ctx, spec)
    state = tmp_path / "state"
    with dask.config.set({"adp.state-dir": str(state)}):
        result = CliRunner().invoke(search, [str(job)])
        case = Case("search-label-missing", lambda c: spec, "search.label")
        message = check_refusal(result, case)
        (record,) = _refusals(state)
    assert (record.event_type, record.outcome, record.reason) == ("job.refused", "failure", message)
