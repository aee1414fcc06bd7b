"""What every ``adp`` subcommand shares: the lazy command group and the one error wrapper.

Subcommands live beside their packages (``adp/jobs/cli.py``, ``adp/models/cli.py``, ...) and
import this module; nothing imports :mod:`adp.cli`.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from adp.errors import AdpError

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


def fail_cleanly(func: F) -> F:
    """Turn ADP's errors into a one-line message on standard error and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AdpError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


__all__ = ["LazyGroup", "fail_cleanly"]
