"""What the notebook tests share (a uniquely named module: every conftest is ``conftest``)."""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

#: Environment the cluster, the service and the kernels must not inherit from the test run:
#: each names a cluster, an audit database, a dask configuration or a plotting backend
#: other than the ones the tests give them.
NOT_INHERITED = ("DASK_SCHEDULER_ADDRESS", "DASK_ADP__AUDIT__URL", "DASK_CONFIG", "MPLBACKEND")


@dataclass
class NotebookCluster:
    """A running scheduler and its two workers."""

    address: str
    metrics_url: str
    state: Path
    log: Path


@dataclass
class Executed:
    """An executed notebook: its cells with their outputs."""

    notebook: Any
    seconds: float
    text: str = field(init=False)

    def __post_init__(self) -> None:
        self.text = "".join(
            o.get("text", "") for cell in self.notebook.cells for o in cell.get("outputs", [])
        )

    def cell_seconds(self) -> list[tuple[float, str]]:
        """Seconds each code cell took, with its first line (nbclient records the times)."""
        out = []
        for cell in self.notebook.cells:
            times = cell.get("metadata", {}).get("execution", {})
            if cell.cell_type == "code" and "shell.execute_reply" in times:
                start = datetime.fromisoformat(times["iopub.execute_input"])
                end = datetime.fromisoformat(times["shell.execute_reply"])
                out.append(((end - start).total_seconds(), cell.source.split("\n", 1)[0]))
        return out

    def images_of_plot_cells(self) -> list[list[str]]:
        """For each code cell that calls ``plt.show()``: its inline PNG outputs."""
        return [
            [o["data"]["image/png"] for o in c.outputs if "image/png" in o.get("data", {})]
            for c in self.notebook.cells
            if c.cell_type == "code" and "plt.show()" in c.source
        ]


def number(pattern: str, text: str) -> int:
    """The integer the first group of ``pattern`` matches in ``text`` (commas allowed)."""
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in the notebook's output:\n{text[-3000:]}"
    return int(found.group(1).replace(",", ""))


def scrape(url: str) -> dict[str, float]:
    """The unlabelled samples of a Prometheus endpoint, by sample name."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.labels
    }


def plots_drawn(run: Executed, expected: int = 1) -> None:
    """Assert that ``expected`` cells call ``plt.show()`` and each drew one inline PNG."""
    images = run.images_of_plot_cells()
    assert len(images) == expected, f"{len(images)} plot cells, expected {expected}"
    for cell in images:
        assert len(cell) == 1 and len(cell[0]) > 5000, "each plot is drawn inline, once"
