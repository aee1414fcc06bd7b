"""Pre-flight: everything about a job that can be checked without a cluster, in a second.

``adp validate JOB.yaml`` runs it alone; ``adp run`` runs it before any cluster starts.
It checks, in order, and stops at the first failure with one error that names the field,
file, column or endpoint:

1. the detector: its name and parameters (:func:`adp.detect.detector.create_detector`
   checks them eagerly), or that a registered model exists; a fit sample large enough
   for it (at least 2 rows, and more than ``n_neighbors`` for neighbour methods);
2. the source: that it exists and the credentials work (one cheap call: a listing on
   S3, ``select 1`` on a database), and its columns, read from the Parquet footers (of
   the first 256 files, in threads: a corrupt footer or a file whose schema differs is
   named with the file it differs from), a CSV's header line (duplicate headers are
   refused) or a table's definition: every
   column the spec names (``features``, ``exclude``, ``key``, ``columns``,
   ``evaluate.label`` / ``kind``, ``report.time`` / ``group``, ``search.label``) exists,
   and named features are numeric;
3. the output: not the source, not inside it and not holding it, nor ``.``, a home or a
   root (:func:`adp.io.guard.check_output_against_sources`); a folder whose nearest
   existing ancestor is a writable folder (not a file) and that holds no data its
   ``mode`` forbids replacing, an S3 bucket that exists (ADP never creates one), or a
   database that answers;
4. the report path: a file in a writable folder.

Every remote call uses ADP's connect and read timeouts and bounded retries
(:func:`adp.io.s3.with_timeouts`, :func:`adp.db.server_connect_args`): a dead or hung
endpoint fails within ~15 s by default, naming it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adp.errors import (
    AccessDeniedError,
    ConfigError,
    DataError,
    SourceError,
    SpecError,
    bounded,
)
from adp.io.guard import check_output_against_sources
from adp.io.s3 import S3_PROTOCOLS, endpoint_of, remote_errors, with_timeouts
from adp.jobs.source_check import (
    filesystem,
    numeric_columns,
    ping,
    source_columns,
    sql_engine,
)
from adp.jobs.spec import JobSpec, OutputSpec
from adp.paths import (
    check_allowed,
    check_storage_options,
    is_local,
    local_path,
    protocol_of,
)


@dataclass
class Checked:
    """What pre-flight checked, for ``adp validate`` to print.

    Attributes
    ----------
    checks : list of str
        One short line per check that passed.
    columns : list of str or None
        The source's columns, when they could be read without a cluster.
    seconds : float
        How long the checks took.
    """

    checks: list[str] = field(default_factory=list)
    columns: list[str] | None = None
    seconds: float = 0.0


def with_io_timeouts(spec: JobSpec) -> JobSpec:
    """``spec`` with ADP's S3 timeouts and retries in its source's and output's
    ``storage_options`` (see :func:`adp.io.s3.with_timeouts`); other specs unchanged."""
    source, output = spec.source, spec.output
    update: dict[str, Any] = {}
    if protocol_of(source.uri) in S3_PROTOCOLS:
        options = with_timeouts(source.uri, source.storage_options)
        update["source"] = source.model_copy(update={"storage_options": options})
    if output is not None and output.table is None and protocol_of(output.uri) in S3_PROTOCOLS:
        options = with_timeouts(output.uri, output.storage_options)
        update["output"] = output.model_copy(update={"storage_options": options})
    return spec.model_copy(update=update) if update else spec


def preflight(spec: JobSpec, *, report_path: str | Path | None = None) -> Checked:
    """Check everything about ``spec`` that needs no cluster (see the module docstring).

    Parameters
    ----------
    spec : JobSpec
        The validated job spec.
    report_path : str or Path, optional
        The report file ``--report`` asks for; default the spec's ``report.path``.

    Returns
    -------
    Checked
        What was checked.

    Raises
    ------
    adp.errors.AdpError
        The first problem found: :class:`~adp.errors.DetectorError`,
        :class:`~adp.errors.SpecError`, :class:`~adp.errors.SourceError`,
        :class:`~adp.errors.DataError` or :class:`~adp.errors.AccessDeniedError`, naming
        the field, file, column or endpoint.
    """
    started = time.perf_counter()
    done = Checked()
    spec = with_io_timeouts(spec)
    done.checks.append(check_detector(spec))
    notes: list[str] = []
    columns = source_columns(spec.source, notes)
    done.columns = columns
    done.checks.append(
        f"source {spec.source.uri}"
        + (f": {len(columns)} columns" if columns is not None else ": exists")
    )
    done.checks += notes
    if columns is not None:
        check_columns(spec, columns)
        done.checks.append("every column the spec names is in the source")
    if spec.output is not None:
        check_output_against_sources(
            spec.output.uri,
            [spec.source],
            table=spec.output.table,
            storage_options=spec.output.storage_options,
        )
        done.checks.append(check_output(spec.output))
    target = report_target(spec, report_path)
    if target is not None:
        check_report_path(str(target))
        done.checks.append(f"report {target} is writable")
    done.seconds = time.perf_counter() - started
    return done


def report_target(spec: JobSpec, report_path: str | Path | None = None) -> str | None:
    """Where the report goes: ``report_path``, else the spec's ``report.path``, else, when
    the spec has a ``report`` section, beside a local output folder (``<output>.report.html``)
    or, for a table or remote output, ``<job name>.report.html`` in the working directory;
    None for no report."""
    if report_path is not None:
        return str(report_path)
    if spec.report is None or spec.output is None:
        return None
    if spec.report.path:
        return spec.report.path
    output = spec.output
    if output.table is None and is_local(output.uri):
        return f"{output.uri.rstrip('/')}.report.html"
    # a table or a remote folder: the report is a local file, in the working directory
    return os.path.abspath(f"{spec.name}.report.html")


# -- the detector ---------------------------------------------------------------------------


def check_detector(spec: JobSpec) -> str:
    """Create the spec's detector (checking name and parameters) or find its registered
    model, and check that the fit sample is large enough. Returns a line for the report."""
    if spec.detector is None:
        return "no detector (a search job)"
    if spec.detector.model is not None:
        from adp.models.api import default_registry, parse_ref

        name, version = parse_ref(spec.detector.model)
        default_registry().info(name, version)
        return f"registered model {spec.detector.model}"
    from adp.detect.detector import create_detector

    name = str(spec.detector.name)
    detector = create_detector(name, **spec.detector.params)
    needed = min_fit_rows(name, spec.detector.params)
    rows = spec.fit.sample_rows
    if rows is not None and rows < needed:
        raise SpecError(
            f"fit.sample_rows is {rows}, but detector {detector.name!r} needs at least "
            f"{needed} rows to fit (a single row gives every row the same score): raise it"
        )
    return f"detector {detector.name} with parameters {dict(spec.detector.params)}"


def min_fit_rows(name: str, params: Mapping[str, Any]) -> int:
    """The fewest rows detector ``name`` can be fitted on: 2, and ``n_neighbors + 1`` for
    neighbour methods (their default ``n_neighbors`` when not given); for an ensemble, the
    most any member needs."""
    if str(name).lower() == "ensemble":
        members = params.get("detectors") or []
        needs = [2]
        for member in members:
            if isinstance(member, str):
                needs.append(min_fit_rows(member, {}))
            elif isinstance(member, Mapping) and isinstance(member.get("name"), str):
                needs.append(min_fit_rows(member["name"], member.get("params") or {}))
        return max(needs)
    neighbours = params.get("n_neighbors")
    if neighbours is None:
        neighbours = _default_param(name, "n_neighbors")
    if isinstance(neighbours, int) and not isinstance(neighbours, bool):
        return max(2, neighbours + 1)
    return 2


def _default_param(name: str, param: str) -> Any:
    import inspect

    from adp.detect.registry import detector_info

    try:
        info = detector_info(name)
        if param in info.defaults:
            return info.defaults[param]
        estimator = info.estimator_class()
        default = inspect.signature(estimator).parameters[param].default
    except Exception:  # unknown name (already refused) or no such parameter
        return None
    return None if default is inspect.Parameter.empty else default


# -- columns --------------------------------------------------------------------------------


def _named(spec: JobSpec) -> dict[str, list[str]]:
    """Every column the spec names, by the field that names it."""
    named: dict[str, list[str]] = {
        "source.features": list(spec.source.features or []),
        "source.exclude": list(spec.source.exclude),
        "source.key": list(spec.source.key),
    }
    if spec.evaluate is not None:
        named["evaluate.label"] = [spec.evaluate.label]
        if spec.evaluate.kind:
            named["evaluate.kind"] = [spec.evaluate.kind]
    if spec.report is not None:
        named["report.time"] = [spec.report.time] if spec.report.time else []
        named["report.group"] = [spec.report.group] if spec.report.group else []
    if spec.search is not None and spec.search.label:
        named["search.label"] = [spec.search.label]
    if spec.context is not None:
        named["context.time"] = [spec.context.time] if spec.context.time else []
        named["context.by"] = [spec.context.by] if spec.context.by else []
        encoded = spec.context.to_context().encoded_columns()
        if encoded:
            named["context.categorical/text"] = encoded
    return {k: v for k, v in named.items() if v}


def check_columns(spec: JobSpec, columns: Sequence[str]) -> None:
    """Refuse a spec naming a column the source lacks, or a named feature that is not
    numeric (when the source's types are known), naming the field and the columns."""
    present = set(columns)
    for where, names in _named(spec).items():
        absent = [n for n in names if n not in present]
        if absent:
            raise DataError(
                f"{where} names {bounded(absent)}, not in the source {spec.source.uri!r}; "
                f"its columns are {bounded(columns)}"
            )
    features = spec.source.features
    numeric = numeric_columns(columns)
    if features and numeric is not None:
        # a column the context encodes (categorical or text) is a feature of any type
        encoded = set(spec.context.to_context().encoded_columns()) if spec.context else set()
        bad = [f for f in features if not numeric.get(f, True) and f not in encoded]
        if bad:
            raise DataError(
                f"source.features names non-numeric columns {bounded(bad)} of "
                f"{spec.source.uri!r}: features must be numeric"
            )


# -- the output and the report --------------------------------------------------------------


def check_output(output: OutputSpec) -> str:
    """Check that ``output`` can be written: a writable local folder, an existing S3
    bucket, or a database that answers. Returns a line for the report."""
    from adp.db import check_identifier, is_sql_url, parse_url, safe_url
    from adp.io.staging import check_target

    if output.table is not None or is_sql_url(output.uri):
        if output.table is None:
            raise SpecError(
                f"output.uri {safe_url(output.uri)} is a database: name the table with output.table"
            )
        check_identifier(output.table, "output.table")
        parsed = parse_url(output.uri)
        database = parsed.database or ""
        sqlite_file = parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:")
        if sqlite_file and not Path(database).exists():  # connecting would create it
            _check_writable_folder(Path(database).parent, "the folder of output.uri")
            return f"output table {output.table} in a new {safe_url(output.uri)}"
        ping(sql_engine(output.uri, "output.uri"), output.uri)
        return f"output table {output.table} in {safe_url(output.uri)}"
    check_allowed(output.uri)
    check_storage_options(output.storage_options)
    if is_local(output.uri):
        _check_writable_folder(local_path(output.uri), "output.uri")
        if output.mode != "upsert":  # the spec allows upsert only for tables
            check_target(output.uri, output.mode, output.storage_options)
        return f"output folder {output.uri} is writable"
    options = with_timeouts(output.uri, output.storage_options)
    protocol = protocol_of(output.uri)
    if protocol in S3_PROTOCOLS:
        bucket = output.uri.split("://", 1)[1].split("/", 1)[0]
        with remote_errors(output.uri, options, "write"):
            fs, _ = filesystem(output.uri, options)
            try:
                fs.call_s3("head_bucket", Bucket=bucket)
            except FileNotFoundError:
                endpoint = endpoint_of(options)
                raise SourceError(
                    f"the output bucket {bucket!r} does not exist"
                    f"{f' at {endpoint}' if endpoint else ''}: create it first (ADP does "
                    "not create buckets)"
                ) from None
        return f"output bucket {bucket} exists"
    return f"output {output.uri}"


def _check_writable_folder(target: Path, field: str) -> None:
    """``target`` is a folder or can be made one: it is not a file, and its nearest
    existing ancestor is a folder this process can write to."""
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{field} {str(target)!r} is a file, not a folder")
    ancestor = target if target.exists() else target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(
            f"{field} {str(target)!r} cannot be created: {str(ancestor)!r} is a file, not a folder"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise AccessDeniedError(
            f"{field} {str(target)!r}: the folder {str(ancestor)!r} is not writable"
        )


def check_report_path(path: str) -> None:
    """The report file can be written: a local file, not a folder, in a writable folder."""
    if not is_local(path):
        raise ConfigError(
            f"report path {path!r} is not a local file: the report is written locally"
        )
    target = local_path(path)
    if target.is_dir():
        raise ConfigError(f"report path {path!r} is a folder: name a file such as report.html")
    _check_writable_folder(target.parent, "the folder of report path")
    if target.exists() and not os.access(target, os.W_OK):
        raise AccessDeniedError(f"report path {path!r} is not writable")


__all__ = [
    "Checked",
    "check_columns",
    "check_detector",
    "check_output",
    "check_report_path",
    "min_fit_rows",
    "preflight",
    "report_target",
    "with_io_timeouts",
]
