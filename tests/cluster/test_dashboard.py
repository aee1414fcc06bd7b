"""The first thing a Dask user opens: the dashboard of a cluster ADP starts."""

from __future__ import annotations

import httpx
from distributed import Client


def test_the_dashboard_of_a_cluster_adp_starts_is_served(client: Client) -> None:
    page = httpx.get(client.dashboard_link, timeout=30, follow_redirects=True)
    assert page.status_code == 200
    assert "needs bokeh" not in page.text.lower()
    assert "bokeh" in page.text.lower() and "<script" in page.text
