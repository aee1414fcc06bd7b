"""Sinks: where a job's scored rows go, behind one protocol.

A sink is used in four steps, each of which leaves the output location as it was until
the last:

1. :meth:`Sink.check`, before any work: refuse an output that holds data unless the mode
   allows replacing (or merging into) it;
2. :meth:`Sink.stage`, inside :meth:`Sink.session`: write the raw scores of every
   partition (one task each) to a staging folder and return a lazy frame that reads them
   back, partition for partition; :meth:`Sink.staged_scores` gives their score column in
   groups of files, for thresholds computed pass by pass without holding the scores;
3. :meth:`Sink.write`: lazy tasks that write the final (flagged) partitions to the staging
   folder, calling an ``inspect`` function on each whole partition first (a job counts
   precision and recall there);
4. :meth:`Sink.commit` with the manifest: move the staged dataset into place at once.

:class:`FolderSink` writes a Parquet dataset to a local or object-store folder (see
:mod:`adp.io.staging` for the atomic commit). :class:`TableSink` stages locally under the
state directory and commits into a database table through
:func:`adp.io.sql_write.write_table` (idempotently, ``upsert`` merging on the key); its
manifest is kept as a row of the table :data:`MANIFEST_TABLE`, written after the data.

A sink does not know who computes its writes: the caller hands :meth:`Sink.session` a
``compute`` (``compute(tasks, "score")`` returns the results in order; a job shows a
progress bar and annotates the graph there) and a threshold ``step``, so a sink is also the
score stage of :func:`adp.detect.detection.run_detection`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import dask
import dask.dataframe as dd
import fsspec
import pandas as pd
from dask.delayed import Delayed

from adp.db import (
    check_identifier,
    parse_url,
    safe_url,
)
from adp.errors import ConfigError, OutputExistsError
from adp.io.cleaning import clean_output, clean_registered
from adp.io.guard import check_output_against_sources
from adp.io.parts import (
    THRESHOLD_ROWS,
    WrittenPart,
    inspect_and_write,
    make_folder,
    part_path,
    reusable_parts,
    staged_frame,
    staged_scores,
    write_partitions,
)
from adp.io.staging import MANIFEST, Staging, check_target, manifest_for, resume_token
from adp.io.table_manifests import (
    MANIFEST_TABLE,
    record_table_manifest,
    table_exists,
    table_manifest,
)
from adp.paths import check_allowed, check_storage_options

#: Computes lazy tasks and returns their results in order; the second argument names what
#: is computed (``"score"``: the raw scores being staged).
Compute = Callable[[Sequence[Any], str], list[Any]]
#: Computes one pass of a threshold (a Delayed) before the next is built.
Step = Callable[[Delayed], Any]
#: Called on each whole final partition before it is written; its results are returned.
Inspect = Callable[[pd.DataFrame], Any]


def compute_here(tasks: Sequence[Any], what: str) -> list[Any]:
    """The default :data:`Compute`: ``dask.compute`` on the current scheduler."""
    return list(dask.compute(*tasks))


class Sink(Protocol):
    """Where scored rows go: check, stage, staged scores, write, commit with a manifest."""

    uri: str
    step: Step | None
    resume_key: str | None
    reused_partitions: int

    def check(self) -> None:
        """Refuse, before any work, an output the mode does not allow writing to.

        Raises
        ------
        adp.errors.OutputExistsError
            Naming the output and the fix.
        """

    def session(
        self, compute: Compute | None = None, step: Step | None = None, stamp: str | None = None
    ) -> AbstractContextManager[Sink]:
        """Open the staging area; it is removed on exit, committed or not (kept for the
        next attempt of a resumable job that failed)."""

    def stage(self, raw: dd.DataFrame) -> dd.DataFrame:
        """Write ``raw`` (index, key columns, ``score``) and return a frame reading it back."""

    def staged_scores(self, staged: dd.DataFrame) -> dd.Series:
        """The score column of ``staged``, possibly in fewer partitions."""

    def write(
        self, frame: dd.DataFrame, *, inspect: Inspect | None = None, drop: Sequence[str] = ()
    ) -> list[Delayed]:
        """Lazy tasks writing each final partition; each computes to ``(WrittenPart, seen)``."""

    def commit(self, parts: Sequence[WrittenPart], manifest: Mapping[str, Any]) -> None:
        """Put the written ``parts`` in place, with ``manifest``."""


def _has_records(folder: str, storage_options: dict[str, Any] | None) -> bool:
    """Whether an earlier attempt left records of staged files in ``folder``."""
    fs, path = fsspec.core.url_to_fs(folder, **(storage_options or {}))
    return bool(fs.glob(f"{path}/part.*.parquet.json"))


class _StagedSink:
    """What both sinks share: a staging folder, the staged raw scores, the final files."""

    uri: str
    step: Step | None = None

    def __init__(
        self, storage_options: dict[str, Any] | None, resume_key: str | None = None
    ) -> None:
        self._options = storage_options
        self._staging: Staging | None = None
        self._compute: Compute = compute_here
        self._raw: list[WrittenPart] = []
        self._staged: dd.DataFrame | None = None
        self.resume_key = resume_key
        self._stamp: str | None = None
        #: Staged score files a resumed attempt found verified and did not compute again.
        self.reused_partitions = 0

    @property
    def _token(self) -> str | None:
        """The staging token every attempt of a resumable job shares."""
        return resume_token(self.resume_key) if self.resume_key else None

    def _new_staging(self) -> Staging:
        raise NotImplementedError

    def _open(self) -> Staging:
        if self._staging is None:
            raise ConfigError(
                f"the sink for {self.uri!r} has no open session: stage and write inside "
                "'with sink.session(...):'"
            )
        return self._staging

    @contextmanager
    def session(
        self,
        compute: Compute | None = None,
        step: Step | None = None,
        stamp: str | None = None,
    ) -> Iterator[Any]:
        """Open the staging area; it is removed on exit, committed or not (a resumable
        sink's is kept when the block fails, for the job's next attempt).

        Parameters
        ----------
        compute : callable, optional
            ``compute(tasks, what)``: computes the staging writes; default ``dask.compute``.
        step : callable, optional
            Computes one threshold pass; None computes the threshold in one graph.
        stamp : str, optional
            What the staged scores depend on (the fitted model and the source): a
            resumable sink reuses a staged file only when it was written for this stamp
            and its bytes still verify.
        """
        if self._staging is not None:
            raise ConfigError(f"the sink for {self.uri!r} already has an open session")
        staging = self._new_staging().open()
        self._staging, self._compute, self.step = staging, compute or compute_here, step
        self._stamp = stamp if self.resume_key else None
        failed = False
        try:
            yield self
        except BaseException:
            failed = True
            raise
        finally:
            self._staging, self._compute, self.step = None, compute_here, None
            self._raw, self._staged, self._stamp = [], None, None
            if failed and self.resume_key and not staging.committed:
                staging.keep()
            else:
                staging.cleanup()

    def stage(self, raw: dd.DataFrame) -> dd.DataFrame:
        """Write every partition of ``raw`` (one task each), then read them back lazily.

        Returns
        -------
        dask.dataframe.DataFrame
            One partition per partition of ``raw``, each reading its staged file.
        """
        staging = self._open()
        folder = staging.path("raw")
        reused: dict[int, WrittenPart] = {}
        if self._stamp is not None and _has_records(folder, self._options):
            checks = reusable_parts(folder, raw.npartitions, self._stamp, self._options)
            found = self._compute(checks, "verify")
            reused = {i: part for i, part in enumerate(found) if part is not None}
        self.reused_partitions = len(reused)
        tasks = write_partitions(raw, folder, self._options, stamp=self._stamp, skip=reused)
        written = iter(self._compute(tasks, "score") if tasks else [])
        self._raw = [reused[i] if i in reused else next(written) for i in range(raw.npartitions)]
        self._staged = staged_frame(self._raw, raw._meta, self._options)
        return self._staged

    def staged_scores(self, staged: dd.DataFrame) -> dd.Series:
        """The score column of the staged files, about :data:`THRESHOLD_ROWS` a partition.

        Each partition reads its files again whenever it is computed. A frame other than
        the one :meth:`stage` returned gives its own ``score`` column.
        """
        if self._staged is None or staged is not self._staged:
            return staged["score"]
        return staged_scores(self._raw, self._options, THRESHOLD_ROWS)

    def write(
        self, frame: dd.DataFrame, *, inspect: Inspect | None = None, drop: Sequence[str] = ()
    ) -> list[Delayed]:
        """Lazy tasks that write each partition of ``frame`` to the staging folder.

        Parameters
        ----------
        frame : dask.dataframe.DataFrame
            The final rows.
        inspect : callable, optional
            Called on each whole partition (``drop`` columns included) before it is written.
        drop : sequence of str
            Columns left out of the written files.

        Returns
        -------
        list of Delayed
            One per partition, in order, each computing to ``(WrittenPart, inspected)``.
        """
        final = self._open().path("final")
        make_folder(final, self._options)
        return [
            dask.delayed(inspect_and_write)(
                part, part_path(final, i), list(drop), inspect, self._options
            )
            for i, part in enumerate(frame.to_delayed())
        ]


class FolderSink(_StagedSink):
    """A Parquet dataset in a local or object-store folder, committed atomically.

    Parameters
    ----------
    uri : str
        The output folder (``out/scores``, ``s3://bucket/scores``).
    mode : {"error", "overwrite"}
        Whether existing data at ``uri`` may be replaced.
    storage_options : dict, optional
        fsspec options for remote stores.
    sources : sequence, optional
        The job's sources (URIs, or source specs with ``uri`` and ``options``): the output
        may not be, contain or lie inside any of them.
    resume_key : str, optional
        Make the job resumable under this key (the service's job id): a failed attempt
        leaves its staging, and the next reuses every staged score file that verifies.
    """

    def __init__(
        self,
        uri: str,
        mode: str = "error",
        storage_options: dict[str, Any] | None = None,
        *,
        sources: Sequence[Any] = (),
        resume_key: str | None = None,
    ) -> None:
        if mode not in ("error", "overwrite"):
            raise ConfigError(
                f"output.mode {mode!r} does not apply to a folder output: use 'error' or "
                "'overwrite' ('upsert' needs a database output with 'table')"
            )
        super().__init__(storage_options, resume_key)
        self.uri = uri
        self.mode = mode
        self.sources = list(sources)

    def __repr__(self) -> str:
        return f"FolderSink({self.uri!r}, mode={self.mode!r})"

    def check(self) -> None:
        """Refuse an output that overlaps a source or is a home, root or current folder;
        remove staging its owners abandoned here; refuse an output folder that holds data
        unless ``mode="overwrite"``, and foreign files whatever the mode.

        Raises
        ------
        adp.errors.ConfigError
            When the output is, contains or lies inside a source, or is ``.``, a home
            directory, a root or a whole bucket.
        adp.errors.OutputExistsError
            When the output holds data the mode does not allow replacing.
        """
        check_output_against_sources(self.uri, self.sources, storage_options=self._options)
        check_storage_options(self._options)
        check_allowed(self.uri)
        clean_output(self.uri, self._options)
        clean_registered(local_only=True)
        check_target(self.uri, self.mode, self._options)  # type: ignore[arg-type]

    def _new_staging(self) -> Staging:
        return Staging(
            self.uri,
            self.mode,  # type: ignore[arg-type]
            self._options,
            token=self._token,
            resumable=self.resume_key,
        )

    def commit(self, parts: Sequence[WrittenPart], manifest: Mapping[str, Any]) -> None:
        """Move the final folder into place; ``_adp_manifest.json`` is written last."""
        staging = self._open()
        staging.commit(staging.path("final"), dict(manifest))


class TableSink(_StagedSink):
    """A database table, written idempotently; scores are staged in a local folder.

    Parameters
    ----------
    url : str
        A SQLAlchemy database URL every worker can reach.
    table : str
        The target table (a plain identifier).
    mode : {"error", "overwrite", "upsert"}
        ``error`` refuses an existing table, ``overwrite`` replaces it, ``upsert`` merges
        on ``key``.
    key : sequence of str
        The columns that identify a row; default the staged rows' index name.
    staging_dir : str or Path, optional
        Where scores are staged, in a new folder with a random name; default
        ``<adp.state-dir>/staging``.
    sources : sequence, optional
        The job's sources: the output table may not be one of them.
    resume_key : str, optional
        As for :class:`FolderSink`.
    """

    def __init__(
        self,
        url: str,
        table: str,
        mode: str = "error",
        *,
        key: Sequence[str] = (),
        staging_dir: str | Path | None = None,
        sources: Sequence[Any] = (),
        resume_key: str | None = None,
    ) -> None:
        if mode not in ("error", "overwrite", "upsert"):
            raise ConfigError(f"output.mode must be 'error', 'overwrite' or 'upsert', got {mode!r}")
        super().__init__(None, resume_key)
        self.uri = url
        self.table = table
        self.mode = mode
        self.key = list(key)
        self.staging_dir = staging_dir
        self.sources = list(sources)

    def __repr__(self) -> str:
        return f"TableSink({safe_url(self.uri)!r}, table={self.table!r}, mode={self.mode!r})"

    def check(self) -> None:
        """Refuse an existing table unless ``mode`` is ``overwrite`` or ``upsert``."""
        parse_url(self.uri)
        check_identifier(self.table)
        check_output_against_sources(self.uri, self.sources, table=self.table)
        clean_registered(local_only=True)
        if table_exists(self.uri, self.table) and self.mode == "error":
            raise OutputExistsError(
                f"table {self.table!r} already exists at the output database; set output.mode "
                "to 'upsert' (merge on the key) or 'overwrite' (replace it)"
            )

    def _new_staging(self) -> Staging:
        if self.staging_dir is None:
            from adp.config import settings

            folder = settings().state_dir / "staging"
        else:
            folder = Path(self.staging_dir)
        return Staging(
            self.uri, "overwrite", base=folder, token=self._token, resumable=self.resume_key
        )

    def commit(self, parts: Sequence[WrittenPart], manifest: Mapping[str, Any]) -> None:
        """Write the staged rows into the table in one transaction, then its manifest row."""
        from adp.io.sql_write import write_table

        self._open()
        staged = dd.read_parquet([p.path for p in parts])
        key = self.key or ([str(staged.index.name)] if staged.index.name else [])
        write_table(staged, self.uri, self.table, key=key, mode=self.mode)  # type: ignore[arg-type]
        record_table_manifest(self.uri, self.table, {**manifest, "table": self.table})


def sink_for(
    uri: str,
    *,
    table: str | None = None,
    mode: str = "error",
    storage_options: dict[str, Any] | None = None,
    key: Sequence[str] = (),
    staging_dir: str | Path | None = None,
    sources: Sequence[Any] | None = None,
    resume_key: str | None = None,
) -> Sink:
    """The sink of an output: a :class:`TableSink` when ``table`` is given, else a folder.

    Parameters
    ----------
    uri : str
        An output folder, or a database URL with ``table``.
    table : str, optional
        The target table of a database output.
    mode : {"error", "overwrite", "upsert"}
        See :class:`FolderSink` and :class:`TableSink`.
    storage_options : dict, optional
        fsspec options of a folder output.
    key : sequence of str
        The columns that identify a row (a table's merge key).
    staging_dir : str or Path, optional
        Where a table output stages its scores.
    sources : sequence, optional
        The job's sources (URIs, or source specs with ``uri`` and ``options``), which the
        sink's check refuses to write over (see :mod:`adp.io.guard`).
    resume_key : str, optional
        Make the job resumable under this key (see :class:`FolderSink`).
    """
    sources = list(sources or ())
    if table is not None:
        if storage_options:
            raise ConfigError("output.storage_options do not apply to a database output")
        return TableSink(
            uri,
            table,
            mode,
            key=key,
            staging_dir=staging_dir,
            sources=sources,
            resume_key=resume_key,
        )
    return FolderSink(uri, mode, storage_options, sources=sources, resume_key=resume_key)


__all__ = [
    "MANIFEST",
    "MANIFEST_TABLE",
    "Compute",
    "FolderSink",
    "Inspect",
    "Sink",
    "Staging",
    "Step",
    "TableSink",
    "WrittenPart",
    "check_target",
    "compute_here",
    "manifest_for",
    "record_table_manifest",
    "sink_for",
    "table_exists",
    "table_manifest",
    "write_partitions",
]
