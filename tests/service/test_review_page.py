"""The review page: over plain HTTP (what it shows, that the analyst is the token's subject
whatever the form says, the 403 page), then in a real browser (Debian's Chromium driven by
Selenium against the service on uvicorn): an analyst signs in, opens the review page,
clicks "Anomaly", the label is stored under their identity and the next row appears; a user
without ``labels:write`` gets the 403 page, and the refusal is in the audit trail."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import dask.config
import pytest
from test_review_api import Reviewed, reviewed_site
from test_web_pages import browser, follow, serve, sign_in, signed_in  # noqa: F401


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory, client: Any) -> Iterator[Reviewed]:
    root = tmp_path_factory.mktemp("review-page")
    with dask.config.set({"adp.state-dir": str(root / "state")}):
        found = reviewed_site(root, client)
        try:
            yield found
        finally:
            found.site.service.close()


def page_url(reviewed: Reviewed, strategy: str = "top") -> str:
    query = urlencode({"model": "sensors", "job": reviewed.job, "strategy": strategy})
    return f"/ui/review?{query}"


def top_keys(reviewed: Reviewed, n: int) -> list[str]:
    """The key texts of the ``n`` highest-scored rows of the job's output."""
    top = reviewed.output.nlargest(n, "score")
    return [
        json.dumps({"sensor": s, "ts": t.isoformat()}, separators=(",", ":"))
        for s, t in zip(top.sensor, top.ts, strict=True)
    ]


def test_the_page_shows_the_row_and_labels_as_the_signed_in_analyst(reviewed: Reviewed) -> None:
    alice = signed_in(reviewed.site, "alice", "analyst")
    done = reviewed.store.reviewed_keys("sensors")
    first = next(k for k in top_keys(reviewed, 20) if k not in done)
    page = alice.get(page_url(reviewed))
    assert page.status_code == 200, page.text
    assert f'<code id="row-key">{first.replace(chr(34), "&#34;")}</code>' in page.text
    assert 'id="threshold">' in page.text and 'id="top-features"' in page.text
    assert 'id="neighbourhood"' in page.text and 'class="offset-0 current"' in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")

    form = {"model": "sensors", "job": reviewed.job, "strategy": "top", "row_key": first}
    answer = alice.post(
        "/ui/review/label",
        data={**form, "label": "normal", "who": "mallory"},  # "who" is not read
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/review?model=sensors")
    latest = {lab.row_key: lab for lab in reviewed.store.labels("sensors")}
    assert (latest[first].label, latest[first].who) == ("normal", "alice")


def test_the_page_refuses_a_user_without_labels_write(reviewed: Reviewed) -> None:
    bob = signed_in(reviewed.site, "bob", "reader")
    page = bob.get(page_url(reviewed))
    assert page.status_code == 403 and 'id="status">403<' in page.text
    assert "labels:write" in page.text
    posted = bob.post(
        "/ui/review/label",
        data={"model": "sensors", "row_key": '{"sensor":"s0","ts":"x"}', "label": "anomaly"},
        follow_redirects=False,
    )
    assert posted.status_code == 403
    denials = [r for r in reviewed.site.audit() if r.outcome == "denied" and r.identity == "bob"]
    assert [r.action for r in denials] == ["labels:write", "labels:write"]
    bad = signed_in(reviewed.site, "alice", "analyst").get(page_url(reviewed, strategy="best"))
    assert bad.status_code == 422 and "unknown review strategy" in bad.text
    unsigned = reviewed.site.http.get(page_url(reviewed), follow_redirects=False)
    assert unsigned.status_code == 303 and unsigned.headers["location"] == "/ui/sign-in"


@pytest.mark.slow
def test_an_analyst_labels_a_row_in_a_real_browser(reviewed: Reviewed, browser: Any) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    from adp.service.api import create_app

    site = reviewed.site
    with serve(create_app(site.service)) as base:
        driver = browser
        sign_in(driver, base, site.token("alice", "analyst"))
        driver.get(base + page_url(reviewed))
        assert driver.title == "Review · ADP"
        shown = driver.find_element(By.ID, "row-key").text
        done = reviewed.store.reviewed_keys("sensors")
        expected = [k for k in top_keys(reviewed, 20) if k not in done]
        assert shown == expected[0]
        assert float(driver.find_element(By.ID, "threshold").text) == pytest.approx(
            reviewed.threshold, rel=1e-5
        )
        assert driver.find_element(By.ID, "flagged").text == "yes"
        assert len(driver.find_elements(By.CSS_SELECTOR, "#top-features tbody tr")) == 2
        assert driver.find_elements(By.CSS_SELECTOR, "#neighbourhood tr.current")

        follow(driver, driver.find_element(By.ID, "label-anomaly"))
        assert "labelled=anomaly" in driver.current_url
        assert "anomaly" in driver.find_element(By.ID, "labelled").text
        assert driver.find_element(By.ID, "row-key").text == expected[1], "the next row"
        latest = {lab.row_key: lab for lab in reviewed.store.labels("sensors")}
        assert (latest[shown].label, latest[shown].who) == ("anomaly", "alice")
        records = [r for r in site.audit() if r.event_type == "feedback.label"]
        assert any(
            r.identity == "alice" and json.loads(r.details or "{}")["row"] == shown for r in records
        )

        # a user without labels:write: the 403 page, and the refusal audited
        driver.get(f"{base}/ui/sign-out")
        sign_in(driver, base, site.token("dave", "reader"))
        driver.get(base + page_url(reviewed))
        assert driver.find_element(By.ID, "status").text == "403"
        assert "labels:write" in driver.find_element(By.ID, "message").text
        assert any(
            r.identity == "dave" and r.action == "labels:write" and r.outcome == "denied"
            for r in site.audit()
        )
