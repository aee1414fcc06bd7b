"""``adp detectors``: the registered detectors, what they cost and whether they can run here."""

from __future__ import annotations

import json
from typing import Any

import click


def detector_rows() -> list[dict[str, Any]]:
    """One dict per registered detector: name, aliases, costs, determinism, availability."""
    from adp.detect.registry import all_detectors

    rows = []
    for info in all_detectors():
        available = info.is_available()
        rows.append(
            {
                "name": info.name,
                "aliases": list(info.aliases),
                "estimator": info.estimator,
                "summary": info.summary,
                "deterministic": info.deterministic,
                "fit_cost": info.fit_cost,
                "score_cost": info.score_cost,
                "strategies": list(info.strategies),
                "available": available,
                "install": "" if available else info.install_hint(),
                "notes": info.notes,
            }
        )
    return rows


@click.command("detectors")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option("--params", "with_params", is_flag=True, help="Also list each detector's parameters.")
@click.option("--excluded", is_flag=True, help="List the PyOD detectors ADP leaves out, and why.")
def detectors(as_json: bool, with_params: bool, excluded: bool) -> None:
    """List the detectors `create_detector(name)` accepts.

    DET is whether fitting the same sample twice gives the same scores without a seed. Any
    detector can be combined with others: create_detector("ensemble", detectors=[...]).
    """
    from adp.detect.catalog import EXCLUDED
    from adp.detect.registry import detector_info

    if excluded:
        if as_json:
            click.echo(json.dumps(EXCLUDED, indent=2))
            return
        for name, reason in EXCLUDED.items():
            click.echo(f"{name}: {reason}")
        return
    rows = detector_rows()
    if with_params:
        for row in rows:
            info = detector_info(row["name"])
            row["params"] = info.valid_params() if row["available"] else []
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    header = ("NAME", "ALIASES", "DET", "FIT COST", "SCORE COST", "AVAILABLE")
    table = [
        (
            r["name"],
            ",".join(r["aliases"]) or "-",
            "yes" if r["deterministic"] else "no",
            r["fit_cost"],
            r["score_cost"],
            "yes" if r["available"] else f"no: {r['install']}",
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *table, strict=True)]
    for line in (header, *table):
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())
    if with_params:
        click.echo()
        for r in rows:
            click.echo(f"{r['name']}: {', '.join(r.get('params', [])) or '(not installed)'}")
    click.echo(
        f"\n{len(rows)} detectors; also 'ensemble' (combinations: average, max, median, aom, "
        "moa, vote). `adp detectors --excluded` lists the PyOD detectors left out."
    )
