"""Roles and policy: the roles oracle (5 roles x 20 checks, written out by hand), the
pattern rules (``*`` stops at ``/``, ``**`` does not) against an independent matcher, denies
that reach into folders and globs, load errors, the checks of real job specs, and the
data-quality gate."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adp.errors import ConfigError
from adp.jobs.spec import JobSpec
from adp.service.policy import (
    ACTIONS,
    Decision,
    Policy,
    PolicyError,
    glob_match,
    job_checks,
    quality_gate,
)

POLICY = """
roles:
  viewer: {}
  analyst:
    allow:
      - jobs:submit
      - data:read:s3://lake/sensors/*
      - data:read:s3://lake/shared/**
      - data:read:s3://lake/logs/day-??.csv
      - data:write:s3://lake/scores/*
      - data:write:sql://db.internal:5432/lake/scores_*
      - models:use
      - models:register:sensors-*
    deny:
      - data:read:s3://lake/sensors/pii/*
  auditor:
    allow: [audit:read, jobs:read-all]
  operator:
    inherit: [analyst]
    allow: ["*"]
  restricted:
    inherit: [analyst]
    deny: [data:write, "models:register:sensors-prod*"]
quality:
  min_score: 0.8
"""

ROLES = ("viewer", "analyst", "auditor", "operator", "restricted")

# The oracle, written from the rules by hand: one row per check, one column per role
# (viewer, analyst, auditor, operator, restricted); 1 allowed, 0 denied.
ORACLE = [
    # plain action, no resource
    (("jobs:submit", None), "0 1 0 1 1"),
    # `*` covers one level under sensors/ ...
    (("data:read", "s3://lake/sensors/temps.parquet"), "0 1 0 1 1"),
    # ... and does not cross '/' (the operator's bare `*` does)
    (("data:read", "s3://lake/sensors/2024/temps.parquet"), "0 0 0 1 0"),
    # `**` crosses '/'
    (("data:read", "s3://lake/shared/a/b/c.csv"), "0 1 0 1 1"),
    # the analyst's explicit deny beats the operator's inherited... own `*`, too
    (("data:read", "s3://lake/sensors/pii/people.parquet"), "0 0 0 0 0"),
    # reading the pii folder whole reads what the deny names
    (("data:read", "s3://lake/sensors/pii"), "0 0 0 0 0"),
    # a glob resource is granted by `**` over its folder
    (("data:read", "s3://lake/shared/*.csv"), "0 1 0 1 1"),
    # `?` is one character, not '/'
    (("data:read", "s3://lake/logs/day-07.csv"), "0 1 0 1 1"),
    (("data:read", "s3://lake/logs/day-7.csv"), "0 0 0 1 0"),
    # restricted denies data:write outright, beating the write it inherits from analyst
    (("data:write", "s3://lake/scores/run1"), "0 1 0 1 0"),
    (("data:write", "/tmp/x"), "0 0 0 1 0"),
    # SQL table globs
    (("data:write", "sql://db.internal:5432/lake/scores_daily"), "0 1 0 1 0"),
    (("data:write", "sql://db.internal:5432/lake/users"), "0 0 0 1 0"),
    # a permission without a resource covers every resource of its action
    (("models:use", "pumps-v3"), "0 1 0 1 1"),
    # model name globs, and restricted's deny of some of them
    (("models:register", "sensors-v2"), "0 1 0 1 1"),
    (("models:register", "sensors-prod1"), "0 1 0 1 0"),
    (("models:register", "pumps-v1"), "0 0 0 1 0"),
    (("audit:read", None), "0 0 1 1 0"),
    # not in the catalogue: denied whatever the roles (the operator's `*` included)
    (("data:delete", "s3://lake/scores/run1"), "0 0 0 0 0"),
    # data:read on every resource: the analyst's grants are scoped, the deny reaches it
    (("data:read", None), "0 0 0 0 0"),
]


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return Policy.from_yaml(path)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_roles_oracle_agrees_100_of_100(policy: Policy) -> None:
    assert len(ORACLE) == 20 and len(ROLES) == 5
    agreed, wrong = 0, []
    for (action, resource), row in ORACLE:
        expected = [flag == "1" for flag in row.split()]
        for role, want in zip(ROLES, expected, strict=True):
            decision = policy.decide([role], action, resource)
            assert decision.action == action and decision.resource == resource
            if decision.allowed == want:
                agreed += 1
            else:
                wrong.append((role, action, resource, decision.reason))
    assert wrong == []
    assert agreed == 100


def test_reasons_name_the_role_and_rule(policy: Policy) -> None:
    pii = "s3://lake/sensors/pii/a.parquet"
    assert policy.decide(["analyst"], "data:read", pii).reason == (
        "denied by analyst: deny data:read:s3://lake/sensors/pii/*"
    )
    assert policy.decide(["operator"], "data:read", pii).reason == (
        "denied by analyst: deny data:read:s3://lake/sensors/pii/* (inherited by operator)"
    )
    assert policy.decide(["analyst"], "data:write", "/tmp/x").reason == (
        "no role grants data:write:/tmp/x (roles: analyst)"
    )
    assert policy.decide(["operator"], "service:admin").reason == "granted by operator: *"
    assert policy.decide(["restricted"], "jobs:submit").reason == (
        "granted by analyst: jobs:submit (inherited by restricted)"
    )
    unknown = policy.decide(["operator"], "data:delete")
    assert not unknown and unknown.reason.startswith("unknown action")
    ghost = policy.decide(["ghost"], "jobs:submit")
    assert not ghost and "not in the policy: ghost" in ghost.reason


def test_roles_combine_and_a_deny_in_any_of_them_wins(policy: Policy) -> None:
    assert policy.decide(["viewer", "auditor"], "audit:read").allowed
    assert not policy.decide(["auditor"], "jobs:submit").allowed
    assert policy.decide(["auditor", "analyst"], "jobs:submit").allowed
    # analyst alone may write scores; with restricted's deny in the set it may not
    assert policy.decide(["analyst"], "data:write", "s3://lake/scores/a").allowed
    assert not policy.decide(["analyst", "restricted"], "data:write", "s3://lake/scores/a")
    # a single role name is a role, not a sequence of letters
    assert policy.decide("analyst", "jobs:submit").allowed  # type: ignore[arg-type]
    assert not policy.decide([], "jobs:submit").allowed


# -- patterns ---------------------------------------------------------------------------------


def _reference(pattern: str, text: str) -> bool:
    """An independent matcher, by recursion over the pattern: ``*`` any run without '/',
    ``**`` any run, ``/**`` (a whole segment) nothing or '/' and any run, ``?`` one
    character but '/', everything else itself."""
    if not pattern:
        return not text
    stars = len(pattern) - len(pattern.lstrip("*"))
    if pattern.startswith("/**"):
        run = 1 + len(pattern[1:]) - len(pattern[1:].lstrip("*"))
        rest = pattern[run:]
        if not rest or rest.startswith("/"):
            return _reference(rest, text) or (
                text.startswith("/")
                and any(_reference(rest, text[i:]) for i in range(1, len(text) + 1))
            )
    if stars >= 2:
        return any(_reference(pattern[stars:], text[i:]) for i in range(len(text) + 1))
    if stars == 1:
        limit = text.find("/") if "/" in text else len(text)
        return any(_reference(pattern[1:], text[i:]) for i in range(limit + 1))
    if not text:
        return False
    if pattern[0] == "?":
        return text[0] != "/" and _reference(pattern[1:], text[1:])
    return text[0] == pattern[0] and _reference(pattern[1:], text[1:])


@pytest.mark.parametrize(
    ("pattern", "resource", "expected"),
    [
        ("s3://lake/*", "s3://lake/a.parquet", True),
        ("s3://lake/*", "s3://lake/a/b.parquet", False),  # * stops at /
        ("s3://lake/**", "s3://lake/a/b.parquet", True),  # ** does not
        ("s3://lake/**/b.parquet", "s3://lake/a/x/b.parquet", True),
        ("s3://lake/**/b.parquet", "s3://lake/b.parquet", True),  # /** may be nothing
        ("s3://lake/a/**", "s3://lake/a", True),
        ("s3://lake/a/**", "s3://lake/ab", False),
        ("s3://lake/a**", "s3://lake/ab/c", True),
        ("s3://lake/?.csv", "s3://lake/a.csv", True),
        ("s3://lake/?.csv", "s3://lake/ab.csv", False),
        ("s3://lake/[ab].csv", "s3://lake/a.csv", False),  # [ is literal
        ("s3://lake/[ab].csv", "s3://lake/[ab].csv", True),
        ("s3://lake/A*", "s3://lake/a1", False),  # case-sensitive
        ("/data/*.parquet", "/data/x.parquet", True),
        ("sql://db:5432/lake/scores_*", "sql://db:5432/lake/scores_1", True),
        ("sensors-*", "sensors-a", True),
        ("sensors-*", "pumps-a", False),
    ],
)
def test_glob_rules(pattern: str, resource: str, expected: bool) -> None:
    assert glob_match(pattern, resource) is expected
    assert _reference(pattern, resource) is expected


_PATTERN = st.text(alphabet="ab/*?.", max_size=10)
_TEXT = st.text(alphabet="ab/.*", max_size=10)


@settings(max_examples=400, deadline=None)
@given(_PATTERN, _TEXT)
def test_the_translated_regex_agrees_with_the_reference(pattern: str, text: str) -> None:
    assert glob_match(pattern, text) is _reference(pattern, text)


def _instance(pattern: str, data: st.DataObject) -> str:
    """A resource ``pattern`` matches, its wildcards filled at random (fsspec's reading)."""
    out = []
    for piece in re.split(r"(\*\*|\*|\?)", pattern):
        if piece == "**":
            out.append(data.draw(st.text(alphabet="ab/", max_size=4)))
        elif piece == "*":
            out.append(data.draw(st.text(alphabet="ab", max_size=3)))
        elif piece == "?":
            out.append(data.draw(st.sampled_from("ab")))
        else:
            out.append(piece)
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab/*?", min_size=1, max_size=8), st.data())
def test_a_deny_reaches_every_folder_that_holds_what_it_denies(deny: str, data) -> None:
    policy = Policy.model_validate(
        {"roles": {"r": {"allow": ["*"], "deny": [f"data:read:s3://{deny}"]}}}
    )
    denied = "s3://" + _instance(deny, data)
    assert not policy.decide(["r"], "data:read", denied)
    # every folder above it, and every glob whose expansion may include it, is denied too
    for cut in [i for i, c in enumerate(denied) if c == "/" and i > len("s3:/")]:
        folder = denied[:cut]
        assert not policy.decide(["r"], "data:read", folder), folder
        assert not policy.decide(["r"], "data:read", folder + "/*.csv"), folder


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet="ab/*", min_size=1, max_size=8),
    st.text(alphabet="ab/*?", min_size=1, max_size=8),
    st.data(),
)
def test_an_allow_grants_a_glob_only_when_it_covers_every_expansion(
    allow: str, asked: str, data
) -> None:
    policy = Policy.model_validate({"roles": {"r": {"allow": [f"data:read:/{allow}"]}}})
    if policy.decide(["r"], "data:read", f"/{asked}").allowed:
        expansion = "/" + _instance(asked, data)
        # a trailing '/' names the same folder as without it
        assert glob_match(f"/{allow}", expansion.rstrip("/") or expansion)


def test_denies_reach_into_folders_and_globs(policy: Policy) -> None:
    for resource in (
        "s3://lake/sensors",
        "s3://lake/sensors/",
        "s3://lake",
        "s3://lake/sensors/p*/a.parquet",
        "s3://lake/**",
    ):
        decision = policy.decide(["operator"], "data:read", resource)
        assert not decision and "deny data:read:s3://lake/sensors/pii/*" in decision.reason
    # a sibling whose name starts like the denied folder is not under it
    assert policy.decide(["operator"], "data:read", "s3://lake/sensors/piix").allowed
    # a glob under sensors/ is not granted by sensors/* (it could name anything below)
    assert not policy.decide(["analyst"], "data:read", "s3://lake/sensors/x/*.csv")


def test_dot_segments_and_hidden_passwords_never_dodge_a_deny(policy: Policy) -> None:
    sneaky = "s3://lake/scores/../sensors/pii/a.parquet"
    decision = policy.decide(["operator"], "data:read", sneaky)
    assert not decision and "'..' segment" in decision.reason
    # credentials in a resource are hidden, and the hidden part is judged as a wildcard
    decision = policy.decide(["operator"], "data:read", "s3://AKIA:s3cr3t@lake/sensors/pii/a")
    assert not decision
    assert "s3cr3t" not in (decision.resource or "") and "s3cr3t" not in decision.reason


# -- loading ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (
            "roles: {analyst: {allow: ['data:delete:s3://lake/*']}}",
            ["roles.analyst.allow[0]", "'data:delete:s3://lake/*'", "unknown action"],
        ),
        (
            "roles: {analyst: {deny: [jobs:submit, 'data:raed']}}",
            ["roles.analyst.deny[1]", "'data:raed'", "unknown action 'data:raed'"],
        ),
        ("roles: {analyst: {allow: ['data:read:']}}", ["roles.analyst.allow[0]", "ends with ':'"]),
        ("roles: {analyst: {alow: [jobs:submit]}}", ["roles.analyst.alow", "unknown field"]),
        ("roles: {}\nqualty: {min_score: 0.5}", ["qualty", "unknown field"]),
        ("roles: {}\nquality: {min_score: 1.5}", ["quality.min_score", "less than or equal"]),
        ("roles: {}\nquality: {min_score: '0.5'}", ["quality.min_score"]),
        (
            "roles: {a: {inherit: [b]}, b: {inherit: [c]}, c: {inherit: [a]}}",
            ["inheritance cycle a -> b -> c -> a"],
        ),
        ("roles: {a: {inherit: [a]}}", ["roles.a.inherit", "inheritance cycle a -> a"]),
        ("roles: {a: {inherit: [ghost]}}", ["roles.a.inherit", "unknown role 'ghost'"]),
        ("roles: {'bad role': {}}", ["roles", "'bad role'"]),
        ("roles: {analyst: {allow: [1]}}", ["roles.analyst.allow[0]", "valid string"]),
        ("roles: [analyst\n  - x: {", ["not valid YAML"]),
        ("", ["holds nothing"]),
        ("quality: {min_score: 0.5}", ["roles", "Field required"]),
        ("!!python/object/apply:os.system ['echo pwned']", ["not valid YAML"]),
    ],
)
def test_load_errors_are_one_line_naming_file_and_entry(
    tmp_path: Path, text: str, names: list[str]
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for name in names:
        assert name in message
    assert isinstance(info.value, ConfigError)


def test_a_missing_policy_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"cannot read the policy .*nope\.yaml"):
        Policy.from_yaml(tmp_path / "nope.yaml")


def test_the_catalogue_and_the_default_policy() -> None:
    assert set(ACTIONS) == {
        "data:read",
        "data:write",
        "jobs:submit",
        "jobs:read-all",
        "jobs:cancel-all",
        "models:use",
        "models:register",
        "labels:write",
        "audit:read",
        "quality:override",
        "retention:apply",
        "service:admin",
        "stream:read",
        "stream:write",
    }
    assert all(isinstance(meaning, str) and meaning for meaning in ACTIONS.values())
    policy = Policy.default()
    assert policy.quality.min_score is None
    for action in ACTIONS:
        assert not policy.decide(["viewer"], action, "x").allowed
        assert policy.decide(["operator"], action, "s3://any/where").allowed
    analyst = ["analyst"]
    assert policy.decide(analyst, "jobs:submit").allowed
    assert policy.decide(analyst, "data:read", "/any/deep/path.parquet").allowed
    assert policy.decide(analyst, "data:write", "sql://h:5432/db/t").allowed
    assert policy.decide(analyst, "models:register", "anything").allowed
    assert not policy.decide(analyst, "jobs:read-all").allowed
    assert not policy.decide(analyst, "audit:read").allowed


# -- what a job needs -------------------------------------------------------------------------


def _spec(**sections: object) -> JobSpec:
    data: dict[str, object] = {
        "source": {"uri": "s3://lake/sensors/2024/", "format": "parquet"},
        "detector": {"name": "iforest"},
        "output": {"uri": "s3://lake/scores/run1"},
    }
    data.update(sections)
    return JobSpec.from_dict(data)


def test_job_checks_of_a_lake_job(policy: Policy) -> None:
    spec = _spec()
    assert job_checks(spec) == [
        ("jobs:submit", None),
        ("data:read", "s3://lake/sensors/2024"),
        ("data:write", "s3://lake/scores/run1"),
    ]
    # sensors/2024 is one level under sensors/: granted; restricted may not write
    assert policy.decide_all(["analyst"], job_checks(spec)).allowed
    denied = policy.decide_all(["restricted"], job_checks(spec))
    assert not denied and denied.action == "data:write"
    assert denied.reason == "denied by restricted: deny data:write"
    # a source under pii is refused, whatever the output
    pii = _spec(source={"uri": "s3a://lake/sensors/pii/"})
    first_denial = policy.decide_all(["operator"], job_checks(pii))
    assert first_denial.action == "data:read" and "pii" in first_denial.reason


def test_job_checks_of_local_paths_resolve_relative_paths_and_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret").mkdir()
    (tmp_path / "public").mkdir()
    os.symlink(tmp_path / "secret", tmp_path / "public" / "link")
    spec = _spec(
        source={"uri": "public/link"},
        output={"uri": f"file://{tmp_path}/out"},
    )
    here = os.getcwd()  # relative paths are resolved against it
    assert job_checks(spec) == [
        ("jobs:submit", None),
        ("data:read", f"{here}/public/link"),
        ("data:read", f"{os.path.realpath(here)}/secret"),
        ("data:write", os.path.abspath(tmp_path / "out")),
    ]
    checks = job_checks(spec)
    allowed = {"roles": {"r": {"allow": ["jobs:submit", f"data:read:{here}/public/**"]}}}
    # the link's own path is granted, the folder it leads to is not: the job is refused
    policy = Policy.model_validate(allowed)
    assert policy.decide(["r"], "data:read", f"{here}/public/link").allowed
    assert not policy.decide_all(["r"], checks).allowed


def test_job_checks_of_sql_models_and_search(policy: Policy) -> None:
    spec = _spec(
        source={
            "uri": "postgresql+psycopg://adp:hunter2@DB.internal:5432/lake",
            "options": {"table": "readings", "schema": "raw", "index_col": "id"},
        },
        detector={"model": "sensors-iforest@3"},
        output={
            "uri": "postgresql+psycopg://adp:hunter2@db.internal:5432/lake",
            "table": "scores_daily",
            "mode": "upsert",
        },
    )
    checks = job_checks(spec)
    assert checks == [
        ("jobs:submit", None),
        ("data:read", "sql://db.internal:5432/lake/raw.readings"),
        ("data:write", "sql://db.internal:5432/lake/scores_daily"),
        ("models:use", "sensors-iforest"),
    ]
    assert "hunter2" not in repr(checks)
    assert policy.decide_all(["operator"], checks).allowed
    denied = policy.decide_all(["analyst"], checks)
    assert not denied and denied.resource == "sql://db.internal:5432/lake/raw.readings"
    assert "no role grants data:read:sql://db.internal:5432/lake/raw.readings" in denied.reason

    search = JobSpec.from_dict(
        {
            "source": {"uri": "s3://lake/shared/train/"},
            "search": {"label": "y", "register": {"name": "sensors-prod-best"}},
        }
    )
    assert job_checks(search) == [
        ("jobs:submit", None),
        ("data:read", "s3://lake/shared/train"),
        ("models:register", "sensors-prod-best"),
    ]
    assert policy.decide_all(["analyst"], job_checks(search)).allowed
    refused = policy.decide_all(["restricted"], job_checks(search))
    assert refused.reason == "denied by restricted: deny models:register:sensors-prod*"


def test_job_checks_of_sqlite_and_remote_endpoints(tmp_path: Path) -> None:
    spec = _spec(
        source={
            "uri": "s3://AKIAKEY:s3cr3t@lake/sensors/a.parquet",
            "storage_options": {"endpoint_url": "http://minio:pw@127.0.0.1:9000"},
        },
        output={"uri": f"sqlite:///{tmp_path}/out.db", "table": "scores"},
    )
    checks = job_checks(spec)
    real = os.path.realpath(tmp_path)
    assert checks[1] == ("data:read", "s3+http://127.0.0.1:9000/lake/sensors/a.parquet")
    assert checks[2][0] == "data:write"
    assert checks[2][1] in (f"sql://{tmp_path}/out.db/scores", f"sql://{real}/out.db/scores")
    assert "s3cr3t" not in repr(checks) and "minio" not in repr(checks)
    # rules about the team's lake do not grant another server's bucket of the same name
    lake = Policy.model_validate({"roles": {"r": {"allow": ["data:read:s3://lake/**"]}}})
    assert not lake.decide(["r"], *checks[1]).allowed


def test_decide_all_returns_the_first_denial_or_every_grant(policy: Policy) -> None:
    checks = [("jobs:submit", None), ("data:write", "/tmp/x"), ("audit:read", None)]
    first = policy.decide_all(["analyst"], checks)
    assert (first.allowed, first.action, first.resource) == (False, "data:write", "/tmp/x")
    granted = policy.decide_all(["analyst"], [("jobs:submit", None), ("models:use", "m")])
    assert granted.allowed and granted.action == "jobs:submit"
    assert granted.reason == "granted by analyst: jobs:submit; granted by analyst: models:use"
    assert not policy.decide_all(["operator"], [])


# -- the data-quality gate --------------------------------------------------------------------


def test_quality_gate(policy: Policy) -> None:
    ok = quality_gate(policy, ["analyst"], 0.85)
    assert ok.allowed and ok.action == "quality:override" and "meets the minimum 0.8" in ok.reason
    assert quality_gate(policy, ["viewer"], 0.8).allowed  # the minimum itself passes
    low = quality_gate(policy, ["analyst"], 0.5)
    assert not low
    assert "quality score 0.5 is below the minimum 0.8" in low.reason
    assert "no role grants quality:override (roles: analyst)" in low.reason
    over = quality_gate(policy, ["analyst", "operator"], 0.5)
    assert over.allowed and over.reason.endswith("overridden by operator")
    for unknown in (None, float("nan")):
        gate = quality_gate(policy, ["analyst"], unknown)
        assert not gate and "minimum 0.8" in gate.reason
    # no minimum: every score passes, even for a role that holds nothing
    assert quality_gate(Policy.default(), ["viewer"], 0.0).allowed
    # an explicit deny of the override wins over the operator's `*`
    strict = Policy.model_validate(
        {
            "roles": {"op": {"allow": ["*"], "deny": ["quality:override"]}},
            "quality": {"min_score": 0.9},
        }
    )
    refused = quality_gate(strict, ["op"], 0.2)
    assert not refused and "denied by op: deny quality:override" in refused.reason


def test_decisions_are_frozen_and_truthful() -> None:
    decision = Decision(True, "jobs:submit", None, "granted by a: jobs:submit")
    assert bool(decision) and not Decision(False, "jobs:submit", None, "no")
    with pytest.raises(AttributeError):
        decision.allowed = False  # type: ignore[misc]
