"""What every ``adp`` subcommand shares: the lazy command group and the one error wrapper.

Subcommands live beside their packages (``adp/jobs/cli.py``, ``adp/models/cli.py``, ...) and
import this module; nothing imports :mod:`adp.cli`.
"""

from __future__ import annotations

import errno
import functools
import importlib
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import click

from adp.errors import AccessDeniedError, AdpError, DataError, SourceError, one_line
from adp.redact import redact_text

F = TypeVar("F", bound=Callable[..., Any])


class LazyGroup(click.Group):
    """A click group whose subcommands live in other modules, imported on first use.

    Parameters
    ----------
    lazy : dict of str to str
        Subcommand name to ``"module:attribute"`` of its :class:`click.Command`.
    """

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module_name, _, attr = self.lazy[name].partition(":")
            try:
                command: click.Command = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:  # pragma: no cover - packaging error
                raise click.ClickException(f"'adp {name}' is not available: {exc}") from exc
            return command
        return super().get_command(ctx, name)


#: The longest message a failed command prints (one or two terminal lines).
MESSAGE_LIMIT = 500


def debug_enabled() -> bool:
    """Whether ``adp --debug`` (dask config ``adp.debug``, ``DASK_ADP__DEBUG=1``) is on."""
    import dask.config

    return bool(dask.config.get("adp.debug", False))


def _where(exc: BaseException, where: str | None) -> str:
    filename = getattr(exc, "filename", None)
    if filename:
        return f" {str(filename)!r}"
    return f" {where!r}" if where else ""


def translate_error(exc: BaseException, where: str | None = None) -> AdpError:
    """An :class:`~adp.errors.AdpError` with a one-line message for an exception that is
    not ADP's own: a full disk, a path whose parent is a file, a denied permission, a CSV
    or Parquet parser error, or anything unexpected.

    Parameters
    ----------
    exc : BaseException
        The exception.
    where : str, optional
        The file or location being read or written, when the caller knows it; an
        ``OSError``'s own ``filename`` is preferred.

    Returns
    -------
    adp.errors.AdpError
        ``exc`` itself when it already is one.
    """
    if isinstance(exc, AdpError):
        return exc
    if type(exc).__name__ == "KilledWorker":
        return _killed_worker(exc)
    at = _where(exc, where)
    name = type(exc).__name__
    reason = one_line(getattr(exc, "strerror", None) or str(exc), 200)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return SourceError(f"no space left on the device writing{at}: free space and rerun")
    if isinstance(exc, OSError) and exc.errno == errno.EDQUOT:
        return SourceError(f"disk quota exceeded writing{at}: free space and rerun")
    if isinstance(exc, NotADirectoryError):
        return SourceError(f"a parent of{at} is a file, not a folder: choose another path")
    if isinstance(exc, IsADirectoryError):
        return SourceError(f"{at.strip() or 'the path'} is a folder where a file was expected")
    if isinstance(exc, PermissionError):
        return AccessDeniedError(f"permission denied on{at or ' a file'}: {reason}")
    if isinstance(exc, FileNotFoundError):
        return SourceError(f"{at.strip() or 'a file'} does not exist: {reason}")
    if name == "ParserError" or "Error tokenizing data" in str(exc):
        return DataError(f"cannot parse the CSV data of{at or ' the source'}: {reason}")
    if "Mismatched dtypes found in `pd.read_csv`" in str(exc):
        columns = _mismatched_columns(str(exc))
        return DataError(
            f"the CSV data of{at or ' the source'} has values that do not match the type "
            f"inferred from its first rows in columns {columns}: a non-numeric cell in a "
            "numeric column? Fix the cells, or exclude the columns from features"
        )
    if name in ("ArrowInvalid", "ArrowIOError", "ArrowException") or (
        type(exc).__module__.startswith("pyarrow") and isinstance(exc, ValueError | OSError)
    ):
        return DataError(f"cannot decode the Parquet data of{at or ' the source'}: {reason}")
    return AdpError(
        f"unexpected {name}{' at' + at if at else ''}: {reason} (run 'adp --debug ...' "
        "for the traceback)"
    )


def _killed_worker(exc: BaseException) -> AdpError:
    """distributed's ``KilledWorker(key, last_worker, allowed_failures)``: the partition
    (the key's index) whose task killed every worker that ran it."""
    key = getattr(exc, "task", None) or (exc.args[0] if exc.args else None)
    tries = getattr(exc, "allowed_failures", None)
    times = f"{tries + 1} times" if isinstance(tries, int) else "repeatedly"
    suspects = getattr(exc, "suspects", None)  # adp.jobs.killed.add_suspects
    if isinstance(key, tuple) and len(key) > 1 and isinstance(suspects, list) and suspects[1:]:
        parts = ", ".join(str(p) for p in suspects[:-1]) + f" and {suspects[-1]}"
        return DataError(
            f"partitions {parts} (task {one_line(str(key[0]), 80)!r}) were each on a worker "
            f"that died, {times}: one of them kills the worker running it and may need more "
            "memory than a worker has (split it, or raise cluster.memory_limit); nothing "
            "was written"
        )
    if isinstance(key, tuple) and len(key) > 1 and isinstance(key[-1], int):
        what = f"partition {key[-1]} (task {one_line(str(key[0]), 80)!r})"
    else:
        what = f"task {one_line(str(key), 80)!r}"
    return DataError(
        f"{what} killed the worker running it {times}: it may need more memory than a "
        "worker has (split that partition, or raise cluster.memory_limit); nothing was written"
    )


def _mismatched_columns(text: str) -> list[str]:
    columns = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("Column", "") and not cells[0].startswith("-"):
            columns.append(cells[0])
    return columns


def print_error(exc: BaseException) -> None:
    """Print ``exc`` as ``error: <one bounded line>`` on standard error (the traceback
    first with ``adp --debug``)."""
    if debug_enabled():
        traceback.print_exception(exc)
    message = one_line(redact_text(str(translate_error(exc))) or "", MESSAGE_LIMIT)
    click.secho(f"error: {message}", fg="red", err=True)


def fail_cleanly(func: F) -> F:
    """Turn every error into a bounded one-line message on standard error and exit status
    1: ADP's own errors as they are, others translated by :func:`translate_error`. A
    traceback is printed only with ``adp --debug``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            print_error(exc)
            sys.exit(1)
        except KeyboardInterrupt as exc:  # Ctrl-C, or adp.jobs.interrupts.JobInterrupted
            click.secho(f"error: {exc or 'interrupted by SIGINT'}", fg="red", err=True)
            sys.exit(getattr(exc, "exit_code", 130))  # 128 + the signal's number

    return wrapper  # type: ignore[return-value]


__all__ = [
    "MESSAGE_LIMIT",
    "LazyGroup",
    "debug_enabled",
    "fail_cleanly",
    "print_error",
    "translate_error",
]
