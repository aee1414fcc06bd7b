"""The one way ADP's packages export names lazily (PEP 562), so ``import adp`` stays cheap.

A package lists where each public name lives and binds the two module hooks::

    __getattr__, __dir__ = lazy_exports(__name__, {"connect": "adp.cluster.connect"})

``"module"`` exports the attribute of the same name; ``"module:attr"`` another attribute;
``"module:"`` the module itself (a subpackage reachable as an attribute).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` that import each name on first use.

    Parameters
    ----------
    package : str
        The exporting module's ``__name__``.
    exports : mapping of str to str
        Public name to ``"module"``, ``"module:attribute"`` or ``"module:"`` (the module).

    Returns
    -------
    tuple of callables
        ``(__getattr__, __dir__)``; the first caches each value in the module's globals.
    """
    table = dict(exports)

    def __getattr__(name: str) -> Any:
        target = table.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, sep, attr = target.partition(":")
        module = importlib.import_module(module_name)
        value = module if sep and not attr else getattr(module, attr or name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(table)

    return __getattr__, __dir__
