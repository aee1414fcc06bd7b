"""Roles and policy: which actions a caller's roles may take on which data and models.

A policy is a YAML file (read with ``yaml.safe_load``; unknown fields are refused)::

    roles:
      analyst:
        allow: ["jobs:submit", "data:read:s3://lake/sensors/**", "models:use"]
        deny:  ["data:read:s3://lake/sensors/pii/**"]
      operator:
        inherit: [analyst]
        allow: ["*"]
    quality:
      min_score: 0.8

**Permissions** are ``group:verb`` (an action of :data:`ACTIONS`), optionally followed by
``:pattern`` over the resource; without a pattern the permission covers every resource of
its action, and a bare ``*`` covers every action on every resource. Patterns match the
whole resource, case-sensitively: ``*`` is any run of characters except ``/``, ``?`` one
character except ``/``, ``**`` any run including ``/``, and a ``/**`` segment also matches
nothing, so ``s3://lake/a/**`` covers the folder ``s3://lake/a`` and everything beneath it.
Every other character (``[`` included) is literal.

**Decisions** deny by default. A deny, in any of the caller's roles or the roles they
inherit, wins over every allow. Because a job reads a folder (or a glob) whole, a deny
reaches *into* a resource: it refuses the resource when it matches the resource or anything
beneath it (``s3://lake/sensors`` is refused by a deny of ``s3://lake/sensors/pii/*``). An
allow grants the resource it matches, as named; a resource holding a wildcard (``*``, ``?``
or ``[``, which fsspec expands) stands for everything under the folder before its first
wildcard, and only an allow ending in ``**`` that covers that folder grants it. A resource
with a ``.`` or ``..`` segment is refused. A request without a resource asks for the action
on every resource: only a permission without a pattern grants it, and any deny of the
action refuses it. Resources are judged with passwords hidden (:func:`adp.redact.redact_url`);
the ``***`` that hides one is a wildcard, so a hidden part never dodges a deny.

**Resources** of a job (:func:`job_checks`) are written as follows:

- a local path: absolute, without ``file://``; when symbolic links lead elsewhere, the real
  path is checked too;
- a remote location: ``scheme://bucket/key`` (``s3a://`` is ``s3://``), without credentials
  (a query string stays, and its ``?`` makes the resource a wildcard one); when
  ``storage_options`` set an ``endpoint_url``, the endpoint comes first
  (``s3+http://minio:9000/bucket/key``), so rules about the team's lake never grant
  another server;
- a database table: ``sql://host[:port]/database/[schema.]table`` (SQLite:
  ``sql:///abs/path/file.db/table``), without user, password or query parameters;
- a registered model: its name, without the version.

Long module: the pattern rules, the policy model and the resources of a job spec are kept
in one place, the one the service imports; the pattern rules would move out first.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from adp.errors import ConfigError, bounded, one_line
from adp.jobs.spec import JobSpec, Number, SourceSpec
from adp.redact import redact_text, redact_url
from adp.stream.spec import BatchSourceSpec

__all__ = [
    "ACTIONS",
    "Decision",
    "Policy",
    "PolicyError",
    "QualityRules",
    "RoleRules",
    "glob_match",
    "job_checks",
    "quality_gate",
]

#: The closed catalogue of actions, each with what it allows.
ACTIONS: Mapping[str, str] = {
    "data:read": "read a source (lake location, SQL table) in a job",
    "data:write": "write a job's output (lake folder, SQL table)",
    "jobs:submit": "submit jobs, and see, cancel and resume one's own",
    "jobs:read-all": "see every user's jobs, their logs and reports",
    "jobs:cancel-all": "cancel any user's job",
    "stream:read": "consume a broker's stream (<kind>://<host:port>/<stream>) in a stream job",
    "stream:write": "write results or dead letters to a broker's stream in a stream job",
    "models:use": "score with a registered model",
    "models:register": "register a model in the registry",
    "labels:write": "review a model's scored rows and label them (resource: the model's name)",
    "audit:read": "read the audit trail",
    "quality:override": "run a job whose data is below the policy's quality minimum",
    "retention:apply": "delete expired job outputs and archive expired audit records",
    "service:admin": "administer the service (configuration, tokens)",
}

_ROLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_WILDCARDS = frozenset("*?[")


class PolicyError(ConfigError):
    """A policy file does not load; the message names the file, the role and the entry."""


# -- patterns ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _tokens(pattern: str) -> tuple[str, ...]:
    """``pattern`` as tokens: ``"/**"`` (a whole ``**`` segment), ``"**"``, ``"*"``, ``"?"``
    or one literal character."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            end = i
            while end < len(pattern) and pattern[end] == "*":
                end += 1
            segment = out[-1:] == ["/"] and (end == len(pattern) or pattern[end] == "/")
            out[-1:] = ["/**"] if segment else [*out[-1:], "**"]
            i = end
        else:
            out.append(pattern[i])
            i += 1
    return tuple(out)


_REGEX = {"/**": "(?:/.*)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}


@functools.lru_cache(maxsize=8192)
def _regex(tokens: tuple[str, ...]) -> re.Pattern[str]:
    """The translated regular expression of a token sequence (matched whole)."""
    return re.compile("".join(_REGEX.get(t) or re.escape(t) for t in tokens), re.DOTALL)


def glob_match(pattern: str, resource: str) -> bool:
    """Whether ``pattern`` matches the whole of ``resource`` (``*`` stops at ``/``).

    Examples
    --------
    >>> glob_match("s3://lake/*", "s3://lake/a.parquet"), glob_match("s3://lake/*", "s3://lake/a/b")
    (True, False)
    >>> glob_match("s3://lake/**", "s3://lake/a/b"), glob_match("s3://lake/a/**", "s3://lake/a")
    (True, True)
    """
    return _regex(_tokens(pattern)).fullmatch(resource) is not None


def _reaches_under(pattern: str, folder: str) -> bool:
    """Whether ``pattern`` matches some resource beginning with ``folder`` (which ends in
    ``/``, or is empty). The last ``/`` of ``folder`` can only come from a literal ``/`` or
    from a ``**``, and every rest of a pattern matches something, so it is enough to match
    ``folder`` against the pattern cut after each of those."""
    if not folder:
        return True
    tokens = _tokens(pattern)
    cuts = [k + 1 for k, t in enumerate(tokens) if t in ("/", "**", "/**")]
    return any(_regex(tokens[:k]).fullmatch(folder) for k in cuts)


def _covers_under(pattern: str, folder: str) -> bool:
    """Whether ``pattern`` matches every resource beginning with ``folder`` (conservative:
    the pattern ends in stars, one of them ``**`` or ``/**``, that take in any rest)."""
    tokens = _tokens(pattern)
    for k in range(len(tokens) - 1, -1, -1):
        if tokens[k] not in _REGEX or tokens[k] == "?":
            return False
        if tokens[k] in ("**", "/**"):
            rest = ".*" if tokens[k] == "**" else "/.*"
            head = _regex(tokens[:k]).pattern
            return re.fullmatch(head + rest, folder, re.DOTALL) is not None
    return False


# -- the policy model -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    entry: str
    action: str | None  # None: every action
    pattern: str | None  # None: every resource


@functools.lru_cache(maxsize=4096)
def _parse(entry: str) -> _Rule:
    """Parse one permission entry; ``ValueError`` says what is wrong with it."""
    if entry == "*":
        return _Rule(entry, None, None)
    if entry != entry.strip() or not entry:
        raise ValueError("has blank space around it (or is empty)")
    group, _, rest = entry.partition(":")
    verb, colon, pattern = rest.partition(":")
    action = f"{group}:{verb}"
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; the actions are {sorted(ACTIONS)}")
    if colon and not pattern:
        raise ValueError("ends with ':' -- leave the ':' out to cover every resource")
    return _Rule(entry, action, pattern if colon else None)


def _check_entry(entry: str) -> str:
    try:
        _parse(entry)
    except ValueError as exc:
        raise ValueError(f"{entry!r} {exc}") from None
    return entry


#: A permission entry, checked when the policy loads.
Permission = Annotated[str, AfterValidator(_check_entry)]


class RoleRules(BaseModel):
    """One role: the permissions it allows and denies, and the roles whose rules it takes in.

    Each entry is ``group:verb`` or ``group:verb:pattern`` (actions of :data:`ACTIONS`), or
    ``*`` for everything.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: tuple[Permission, ...] = ()
    deny: tuple[Permission, ...] = ()
    inherit: tuple[str, ...] = ()


class QualityRules(BaseModel):
    """The data-quality gate: jobs whose data scores below ``min_score`` need
    ``quality:override``; ``None`` turns the gate off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_score: Number | None = Field(None, ge=0.0, le=1.0)


class Policy(BaseModel):
    """Roles and their permissions, and the data-quality gate.

    Examples
    --------
    >>> policy = Policy.default()
    >>> policy.decide(["analyst"], "data:read", "s3://lake/sensors/a.parquet").allowed
    True
    >>> policy.decide(["viewer"], "jobs:submit").reason
    'no role grants jobs:submit (roles: viewer)'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    roles: dict[str, RoleRules]
    quality: QualityRules = Field(default_factory=QualityRules)

    @field_validator("roles")
    @classmethod
    def _role_names(cls, roles: dict[str, RoleRules]) -> dict[str, RoleRules]:
        for name in roles:
            if not _ROLE_NAME.fullmatch(name):
                raise ValueError(
                    f"role name {name!r} is not valid: use letters, digits, '.', '_' or '-'"
                )
        return roles

    @model_validator(mode="after")
    def _inheritance(self) -> Policy:
        for name, rules in self.roles.items():
            unknown = [parent for parent in rules.inherit if parent not in self.roles]
            if unknown:
                raise ValueError(
                    f"roles.{name}.inherit: unknown role {unknown[0]!r}; the roles are "
                    f"{bounded(self.roles)}"
                )
        done: set[str] = set()

        def visit(name: str, path: list[str]) -> None:
            if name in path:
                cycle = " -> ".join([*path[path.index(name) :], name])
                raise ValueError(f"roles.{path[-1]}.inherit: inheritance cycle {cycle}")
            if name not in done:
                for parent in self.roles[name].inherit:
                    visit(parent, [*path, name])
                done.add(name)

        for name in self.roles:
            visit(name, [])
        return self

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Policy:
        """Read and validate a policy file (with ``yaml.safe_load``).

        Raises
        ------
        PolicyError
            On one line, naming the file and the role and entry at fault.
        """
        where = str(Path(path))
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"cannot read the policy {where!r}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise PolicyError(
                f"the policy {where!r} is not UTF-8 text (byte {exc.start})"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PolicyError(
                f"the policy {where!r} is not valid YAML: {one_line(str(exc), 200)}"
            ) from None
        if not isinstance(data, dict):
            got = "nothing" if data is None else type(data).__name__
            raise PolicyError(
                f"the policy {where!r} must be a mapping with 'roles'; it holds {got}"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise PolicyError(f"the policy {where!r} is invalid: {_describe(exc)}") from None

    @classmethod
    def default(cls) -> Policy:
        """The built-in policy: ``viewer`` (sees and cancels only their own jobs),
        ``analyst`` (submits jobs, reads and writes any data, uses and registers any model,
        labels any model's rows) and ``operator`` (everything); no quality minimum."""
        analyst = ("jobs:submit", "data:read:**", "data:write:**", "models:use:**")
        return cls(
            roles={
                "viewer": RoleRules(),
                "analyst": RoleRules(allow=(*analyst, "models:register:**", "labels:write:**")),
                "operator": RoleRules(allow=("*",)),
            }
        )

    def _expand(self, roles: Sequence[str]) -> list[tuple[str, str]]:
        """``(role, held through)`` for the given roles and all they inherit, in order."""
        out: list[tuple[str, str]] = []
        seen: set[str] = set()

        def visit(name: str, via: str) -> None:
            if name in seen or name not in self.roles:
                return
            seen.add(name)
            out.append((name, via))
            for parent in self.roles[name].inherit:
                visit(parent, via)

        for role in roles:
            visit(role, role)
        return out

    def _decide(
        self, roles: Sequence[str], action: str, resource: str | None
    ) -> tuple[Decision, str | None]:
        roles = [roles] if isinstance(roles, str) else list(roles)
        shown = redact_url(resource)

        def decision(allowed: bool, reason: str) -> Decision:
            return Decision(allowed, action, shown, redact_text(reason) or "")

        if action not in ACTIONS:
            return decision(False, f"unknown action {action!r}"), None
        target = _Target.of(shown) if shown else None
        if target is not None and target.dotted:
            reason = f"the resource {shown!r} has a '.' or '..' segment: name it without one"
            return decision(False, reason), None
        held = self._expand(roles)
        for kind in ("deny", "allow"):
            for role, via in held:
                for entry in getattr(self.roles[role], kind):
                    rule = _parse(entry)
                    if rule.action not in (None, action):
                        continue
                    if rule.pattern is not None and (
                        target is None
                        and kind == "allow"
                        or target is not None
                        and not target.matched_by(rule.pattern, kind)
                    ):
                        continue
                    inherited = f" (inherited by {via})" if via != role else ""
                    if kind == "deny":
                        return decision(False, f"denied by {role}: deny {entry}{inherited}"), None
                    return decision(True, f"granted by {role}: {entry}{inherited}"), role
        what = action if resource is None else f"{action}:{shown}"
        unknown = [role for role in roles if role not in self.roles]
        note = f"; not in the policy: {', '.join(unknown)}" if unknown else ""
        return decision(
            False, f"no role grants {what} (roles: {', '.join(roles) or 'none'}{note})"
        ), None

    def decide(self, roles: Sequence[str], action: str, resource: str | None = None) -> Decision:
        """Whether ``roles`` may take ``action`` on ``resource``, and which rule decided.

        Parameters
        ----------
        roles : sequence of str
            The caller's roles (from their verified token); roles the policy does not name
            grant nothing.
        action : str
            An action of :data:`ACTIONS`; any other is denied (``unknown action``).
        resource : str, optional
            The resource, written as :func:`job_checks` writes it; ``None`` asks for the
            action on every resource.

        Returns
        -------
        Decision
            Its ``reason`` names the role and entry that decided, or says that no role grants
            the action; the resource in it has any password hidden.
        """
        return self._decide(roles, action, resource)[0]

    def decide_all(
        self, roles: Sequence[str], checks: Iterable[tuple[str, str | None]]
    ) -> Decision:
        """The first denial among ``checks`` (``(action, resource)`` pairs, as
        :func:`job_checks` gives them), else an allowing decision naming every grant.

        No checks at all is a denial: there is nothing to grant.
        """
        granted: list[Decision] = []
        for action, resource in checks:
            decision = self.decide(roles, action, resource)
            if not decision.allowed:
                return decision
            granted.append(decision)
        if not granted:
            return Decision(False, "", None, "nothing to decide: no checks were given")
        reason = "; ".join(dict.fromkeys(d.reason for d in granted))
        return Decision(True, granted[0].action, granted[0].resource, reason)


@dataclass(frozen=True)
class Decision:
    """What the policy decided: ``allowed`` (also the truth value), for which ``action`` and
    ``resource``, and the ``reason`` (the role and rule that decided), fit for the audit
    trail and the 403 answer."""

    allowed: bool
    action: str
    resource: str | None
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True)
class _Target:
    """A resource as rules see it: ``name`` (trailing ``/`` removed), and for a wildcard
    resource the ``folder`` it stands for."""

    name: str
    folder: str | None
    dotted: bool

    @classmethod
    def of(cls, resource: str) -> _Target:
        name = resource.rstrip("/") or resource
        dotted = any(part in (".", "..") for part in name.split("/"))
        first = next((i for i, c in enumerate(name) if c in _WILDCARDS), None)
        folder = None if first is None else name[: name.rfind("/", 0, first) + 1]
        return cls(name, folder, dotted)

    def matched_by(self, pattern: str, kind: str) -> bool:
        if kind == "deny":
            if self.folder is not None:
                return _reaches_under(pattern, self.folder)
            return glob_match(pattern, self.name) or _reaches_under(pattern, self.name + "/")
        if self.folder is not None:
            return _covers_under(pattern, self.folder)
        return glob_match(pattern, self.name)


def _describe(exc: ValidationError, limit: int = 3) -> str:
    """The failed fields as ``roles.analyst.allow: message``, joined by ``;``."""
    parts = []
    for error in exc.errors()[:limit]:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        where = where.removeprefix(".")
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{where}: {message}" if where else message)
    more = exc.error_count() - limit
    return one_line("; ".join(parts) + (f"; ... and {more} more" if more > 0 else ""), 600)


# -- what a job needs -------------------------------------------------------------------------


def _local(path: str) -> list[str]:
    for prefix in ("file://", "local://"):
        path = path.removeprefix(prefix)
    absolute = os.path.abspath(os.path.expanduser(path))
    real = os.path.realpath(absolute)
    return [absolute] if real == absolute else [absolute, real]


def _locations(uri: str, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """A lake location as resources (two for a local path behind a symbolic link)."""
    from adp.io.s3 import endpoint_of
    from adp.paths import is_local

    if is_local(uri):
        return _local(uri)
    scheme, sep, after = uri.partition("://")
    if not sep:
        return [redact_url(uri) or ""]
    scheme = {"s3a": "s3", "s3n": "s3"}.get(scheme.lower(), scheme.lower())
    end = next((i for i, c in enumerate(after) if c in "/?#"), len(after))
    netloc, rest = after[:end].rpartition("@")[2].lower(), after[end:].rstrip("/")
    endpoint = endpoint_of(storage_options)
    if endpoint:
        ep = urlsplit(endpoint)
        host = ep.netloc.rpartition("@")[2].lower()
        prefix = f"{scheme}+{ep.scheme.lower()}://{host}{ep.path.rstrip('/')}/{netloc}"
    else:
        prefix = f"{scheme}://{netloc}"
    return [redact_url(prefix + rest) or ""]


def _tables(url: str, table: str | None, schema: str | None = None) -> list[str]:
    """A database table (without ``table``: the database) as resources."""
    import sqlalchemy as sa

    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return [f"sql://{redact_url(url)}"]  # unparseable: refused when opened
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ":memory:"
        files = [database] if database.startswith(("file:", ":memory:")) else _local(database)
        bases = [f"sql:///{name.lstrip('/')}" for name in files]
    else:
        host = (parsed.host or "").lower()
        host = f"[{host}]" if ":" in host else host
        port = f":{parsed.port}" if parsed.port else ""
        bases = [f"sql://{host}{port}/{parsed.database or ''}"]
    if table is None:
        return bases
    name = f"{schema}.{table}" if schema else str(table)
    return [f"{base}/{name}" for base in bases]


def _source_resources(source: SourceSpec | BatchSourceSpec) -> list[str]:
    """A batch source (a job's, or a stream's fit or threshold source) as resources."""
    from adp.db import is_sql_url

    if source.format == "sql" or (source.format is None and is_sql_url(source.uri)):
        table, schema = source.options.get("table"), source.options.get("schema")
        return _tables(
            source.uri,
            None if table is None else str(table),
            None if schema is None else str(schema),
        )
    return _locations(source.uri, source.storage_options)


def job_checks(spec: JobSpec) -> list[tuple[str, str | None]]:
    """What running ``spec`` needs the policy to grant, as ``(action, resource)`` pairs.

    ``jobs:submit``; ``data:read`` of the source; ``data:write`` of the output (its lake
    location, or its table); ``models:use`` of a registered model the detector names;
    ``models:register`` of the name a search registers. Resources are written as the module
    docstring says. The HTML report is not checked: the caller decides where it goes (the
    service keeps reports in its own directory).

    Parameters
    ----------
    spec : adp.jobs.spec.JobSpec
        A validated spec (its local paths already absolute).

    Returns
    -------
    list of (str, str or None)
        Without duplicates; pass it to :meth:`Policy.decide_all`.
    """
    checks: list[tuple[str, str | None]] = [("jobs:submit", None)]
    checks += [("data:read", r) for r in _source_resources(spec.source)]
    output = spec.output
    if output is not None:
        if output.table is not None:
            written = _tables(output.uri, output.table)
        else:
            written = _locations(output.uri, output.storage_options)
        checks += [("data:write", r) for r in written]
    if spec.detector is not None and spec.detector.model is not None:
        checks.append(("models:use", spec.detector.model.partition("@")[0].strip()))
    if spec.search is not None and spec.search.registration is not None:
        checks.append(("models:register", spec.search.registration.name))
    return list(dict.fromkeys(checks))


# -- the data-quality gate --------------------------------------------------------------------


def quality_gate(policy: Policy, roles: Sequence[str], score: float | None) -> Decision:
    """Whether a job whose data has quality ``score`` may run (action ``quality:override``).

    Allowed when the policy sets no ``quality.min_score`` or ``score`` reaches it. Below it
    (or with no finite score to compare), allowed only when ``roles`` hold
    ``quality:override`` (the reason says ``overridden by <role>``); otherwise denied, the
    score and the minimum in the reason.
    """
    action = "quality:override"
    minimum = policy.quality.min_score
    if minimum is None:
        return Decision(True, action, None, "the policy sets no quality minimum")
    value = None if score is None else float(score)
    if value is not None and math.isfinite(value) and value >= minimum:
        reason = f"quality score {value!r} meets the minimum {minimum!r}"
        return Decision(True, action, None, reason)
    if value is None or not math.isfinite(value):
        below = f"no finite quality score ({value!r}) to compare with the minimum {minimum!r}"
    else:
        below = f"quality score {value!r} is below the minimum {minimum!r}"
    decision, role = policy._decide(roles, action, None)
    if decision.allowed:
        return Decision(True, action, None, f"{below}; overridden by {role}")
    return Decision(False, action, None, f"{below}; {decision.reason}")
