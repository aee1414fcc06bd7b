"""Matplotlib for the report, without a display: figures rendered as inline SVG."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def svg(fig: Any) -> str:
    """``fig`` as an inline ``<svg>`` element (the figure is closed)."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


__all__ = ["plt", "svg"]
