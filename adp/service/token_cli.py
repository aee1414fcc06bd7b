"""``adp token``: tokens for the ADP service's embedded default (HS256, the secret in
``adp.state-dir``).

``adp token issue --sub alice --role analyst --ttl 8h`` prints the token alone, so a shell
can keep it: ``export ADP_TOKEN=$(adp token issue --sub alice --role analyst)``.
"""

from __future__ import annotations

import click

from adp.clitools import fail_cleanly

__all__ = ["token"]


@click.group(name="token")
def token() -> None:
    """Issue bearer tokens for the ADP service's embedded HS256 default."""


@token.command()
@click.option("--sub", "subject", required=True, help="Who the token is for (its sub claim).")
@click.option(
    "--role",
    "roles",
    multiple=True,
    help="A role the token carries (its roles claim); repeat for several.",
)
@click.option(
    "--ttl",
    default="8h",
    show_default=True,
    help="How long the token is valid: a number and s, m, h or d (90s, 30m, 8h, 2d).",
)
@fail_cleanly
def issue(subject: str, roles: tuple[str, ...], ttl: str) -> None:
    """Print a token signed with the service's secret (created in adp.state-dir when
    missing); only the token is printed."""
    from adp.service.identity import issue_token, parse_ttl

    click.echo(issue_token(subject, roles, parse_ttl(ttl)))
