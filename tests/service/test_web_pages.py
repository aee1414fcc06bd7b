"""The team's web pages: statuses, redirects, the cookie, escaping and what each user may
see over plain HTTP, then the whole walk in a real browser (Debian's Chromium driven by
Selenium against the service on uvicorn): sign in, watch a job go from queued to succeeded,
open its page and its report."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from ci_support import need_in_ci
from fastapi.testclient import TestClient
from service_site import POLICY, Site, job_spec, wait_for, write_lake

TESTS = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
SCRIPT_NAME = "<script>document.title='pwned'</script>"


# -- helpers ------------------------------------------------------------------------------


def start_pages(root: Path, client: Any, *, run_jobs: bool, max_running: int = 2) -> Site:
    """A service whose driver runs jobs or not (``run_jobs=False``: jobs stay queued)."""
    from adp.config import settings
    from adp.service.api import create_app
    from adp.service.server import Service

    write_lake(root / "lake")
    policy_file = root / "policy.yaml"
    policy_file.write_text(POLICY.format(lake=root / "lake", out=root / "out"))
    options = settings().service.model_copy(
        update={"max_running": max_running, "policy": policy_file}
    )
    service = Service.start(options, client=client, run_jobs=run_jobs)
    return Site(service, TestClient(create_app(service)), root)


def signed_in(site: Site, sub: str, *roles: str, ttl: float = 3600) -> TestClient:
    """A client of the site's app that signed in through the form (it keeps the cookie)."""
    browser = TestClient(site.http.app)
    answer = browser.post(
        "/ui/sign-in", data={"token": site.token(sub, *roles, ttl=ttl)}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    return browser


def queued_job(site: Site, name: str = "svc", sub: str = "alice") -> str:
    answer = site.submit(job_spec(site.lake, site.out / name.strip("<>/'=()"), name=name), sub)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def row(html: str, job_id: str) -> str:
    """The table row of ``job_id`` on the jobs page ("" when absent)."""
    match = re.search(rf'<tr id="job-{job_id}">(.*?)</tr>', html, re.S)
    return match.group(1) if match else ""


@pytest.fixture
def pages(tmp_path: Path, state_dir: Path, client: Any) -> Iterator[Site]:
    """A service that queues jobs but never runs them (the pages' states stay put)."""
    site = start_pages(tmp_path, client, run_jobs=False)
    try:
        yield site
    finally:
        site.service.close()


# -- plain HTTP ---------------------------------------------------------------------------
def test_the_pages_and_the_api_share_one_cookie() -> None:
    from adp.service import api, web

    assert web.TOKEN_COOKIE == api.TOKEN_COOKIE


def test_unauthenticated_pages_redirect_to_the_sign_in_form_and_are_audited(pages: Site) -> None:
    http = pages.http
    assert http.get("/", follow_redirects=False).headers["location"] == "/ui/jobs"
    for path in ("/ui/jobs", "/ui/jobs/abc", "/ui/models", "/ui/jobs/abc/report"):
        answer = http.get(path, follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (303, "/ui/sign-in"), path
    answer = http.post("/ui/jobs/abc/cancel", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/sign-in"
    denials = [r for r in pages.audit() if r.event_type == "auth.denied"]
    assert [r.resource for r in denials] == [
        "GET /ui/jobs",
        "GET /ui/jobs/abc",
        "GET /ui/models",
        "GET /ui/jobs/abc/report",
        "POST /ui/jobs/abc/cancel",
    ]
    # the API itself still answers 401 in JSON, and the form is there to sign in
    assert http.get("/jobs").status_code == 401
    form = http.get("/ui/sign-in")
    assert form.status_code == 200 and '<form method="post" action="/ui/sign-in"' in form.text


def test_an_expired_cookie_is_forgotten_and_the_browser_sent_to_sign_in(pages: Site) -> None:
    import datetime as dt

    from adp.service.identity import issue_token

    old = issue_token(
        "alice", ["analyst"], dt.timedelta(seconds=60), now=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    )
    browser = TestClient(pages.http.app)
    browser.cookies.set("adp_token", old)
    answer = browser.get("/ui/jobs", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/sign-in"
    assert 'adp_token=""' in answer.headers["set-cookie"]
    assert "Max-Age=0" in answer.headers["set-cookie"]
    assert [r.reason for r in pages.audit() if r.event_type == "auth.denied"] == [
        "the token has expired"
    ]


def test_signing_in_sets_a_strict_http_only_cookie_that_ends_with_the_token(pages: Site) -> None:
    browser = TestClient(pages.http.app)
    token = pages.token("alice", "analyst", ttl=120)
    answer = browser.post("/ui/sign-in", data={"token": token}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/jobs"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"adp_token={token};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; set when the page is reached over HTTPS
    max_age = int(re.search(r"Max-Age=(\d+)", cookie).group(1))  # type: ignore[union-attr]
    assert 100 <= max_age <= 120, "the cookie never outlives the token"
    assert browser.get("/ui/jobs").status_code == 200
    signed = [r for r in pages.audit() if r.event_type == "auth.sign-in"]
    assert [(r.identity, r.outcome) for r in signed] == [("alice", "success")]
    assert token not in str([r.to_dict() for r in pages.audit()]), "no token in the trail"

    out = browser.get("/ui/sign-out", follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/ui/sign-in"
    assert 'adp_token=""' in out.headers["set-cookie"]
    assert browser.get("/ui/jobs", follow_redirects=False).status_code == 303

    over_tls = TestClient(pages.http.app, base_url="https://testserver")
    secure = over_tls.post("/ui/sign-in", data={"token": token}, follow_redirects=False)
    assert "Secure" in secure.headers["set-cookie"]


def test_a_bad_token_reshows_the_form_with_the_reason_escaped_and_audited(pages: Site) -> None:
    http = pages.http
    bad = http.post("/ui/sign-in", data={"token": "not-a-token"}, follow_redirects=False)
    assert bad.status_code == 401
    assert "the bearer token is not a well-formed JWT" in bad.text
    assert "set-cookie" not in bad.headers
    empty = http.post("/ui/sign-in", data={"token": ""}, follow_redirects=False)
    assert empty.status_code == 401
    assert "Bearer &lt;token&gt;" in empty.text and "Bearer <token>" not in empty.text
    denials = [r for r in pages.audit() if r.event_type == "auth.denied"]
    assert [(r.resource, r.outcome, r.identity) for r in denials] == [
        ("POST /ui/sign-in", "denied", "anonymous")
    ] * 2
    assert "well-formed" in (denials[0].reason or "")


def test_the_jobs_page_shows_ones_own_jobs_escaped_and_refreshes_while_any_is_queued(
    pages: Site,
) -> None:
    mine = queued_job(pages, SCRIPT_NAME)
    theirs = queued_job(pages, "bobs", sub="bob")

    page = signed_in(pages, "alice", "analyst").get("/ui/jobs")
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    mine_row = row(page.text, mine)
    assert '<td class="state state-queued">queued</td>' in mine_row
    assert '<td class="owner">alice</td>' in mine_row
    assert f'<a href="/ui/jobs/{mine}">' in mine_row
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in mine_row
    assert "<script>" not in page.text
    assert row(page.text, theirs) == "", "alice does not see bob's job"
    assert '<meta http-equiv="refresh" content="2">' in page.text

    everyone = signed_in(pages, "ops", "operator").get("/ui/jobs").text
    assert row(everyone, mine) and row(everyone, theirs)

    nobody = signed_in(pages, "carol", "analyst").get("/ui/jobs").text
    assert 'id="no-jobs"' in nobody and 'http-equiv="refresh"' not in nobody


def test_a_job_page_is_its_owners_403_for_others_and_404_for_unknown_ids(pages: Site) -> None:
    job_id = queued_job(pages)
    alice = signed_in(pages, "alice", "analyst")
    page = alice.get(f"/ui/jobs/{job_id}")
    assert page.status_code == 200
    assert 'id="state">queued<' in page.text and 'id="owner">alice<' in page.text
    assert "queued by alice" in page.text  # the log
    assert '<td class="event">service.submit</td>' in page.text  # the job's audit records
    assert "detector:\n  name: hbos" in page.text  # the spec, as YAML
    assert 'id="cancel"' in page.text and 'id="report"' not in page.text
    assert '<meta http-equiv="refresh" content="2">' in page.text

    bob = signed_in(pages, "bob", "analyst")
    denied = bob.get(f"/ui/jobs/{job_id}")
    assert denied.status_code == 403
    assert 'id="status">403<' in denied.text and "jobs:read-all" in denied.text
    assert "queued by alice" not in denied.text
    assert bob.get(f"/ui/jobs/{job_id}/report").status_code == 403
    assert bob.post(f"/ui/jobs/{job_id}/cancel", follow_redirects=False).status_code == 403
    refusals = [r for r in pages.audit() if r.outcome == "denied" and r.job_id == job_id]
    assert len(refusals) == 3 and {r.identity for r in refusals} == {"bob"}
    metrics = pages.http.get("/metrics").text
    assert 'adp_service_denials_total{kind="policy"} 3.0' in metrics, "pages count their 403s"

    missing = alice.get("/ui/jobs/0123456789abcdef")
    assert missing.status_code == 404 and 'id="status">404<' in missing.text
    assert "there is no job 0123456789abcdef" in missing.text
    no_report = alice.get(f"/ui/jobs/{job_id}/report")
    assert no_report.status_code == 404 and "has no report" in no_report.text
    assert pages.service.store.get(job_id).state == "queued"


def test_cancel_from_the_page_redirects_back_and_a_second_cancel_is_a_conflict(
    pages: Site,
) -> None:
    job_id = queued_job(pages)
    alice = signed_in(pages, "alice", "analyst")
    answer = alice.post(f"/ui/jobs/{job_id}/cancel", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == f"/ui/jobs/{job_id}"
    page = alice.get(f"/ui/jobs/{job_id}").text
    assert 'id="state">cancelled<' in page and 'id="cancel"' not in page
    assert "cancel asked by alice" in page and 'http-equiv="refresh"' not in page
    again = alice.post(f"/ui/jobs/{job_id}/cancel", follow_redirects=False)
    assert again.status_code == 409 and "already ended (cancelled)" in again.text


def test_a_finished_jobs_page_shows_its_summary_and_serves_its_report_sandboxed(
    pages: Site,
) -> None:
    store = pages.service.store
    job_id = queued_job(pages)
    assert store.claim() is not None
    report = pages.root / "report.html"
    report.write_text("<html><head><title>ADP report: svc</title></head><body>ok</body></html>")
    summary = {
        "rows": 2000,
        "anomalies": 100,
        "anomaly_share": 0.05,
        "threshold": 1.2345678,
        "detector": "hbos",
        "partitions": 4,
        "evaluation": {"precision": 0.8, "recall": 0.75},
    }
    store.finish(job_id, "succeeded", summary=summary, report=str(report))

    alice = signed_in(pages, "alice", "analyst")
    page = alice.get(f"/ui/jobs/{job_id}").text
    assert 'id="rows">2000<' in page and 'id="anomalies">100 (5.00%)<' in page
    assert 'id="threshold">1.23457<' in page
    assert 'id="precision">0.800<' in page and 'id="recall">0.750<' in page
    assert f'href="/ui/jobs/{job_id}/report"' in page and 'id="cancel"' not in page
    served = alice.get(f"/ui/jobs/{job_id}/report")
    assert served.status_code == 200 and "<title>ADP report: svc</title>" in served.text
    assert served.headers["content-type"].startswith("text/html")
    assert served.headers["content-security-policy"].startswith("sandbox;")


def test_the_models_page_lists_the_versions_a_caller_may_use(pages: Site, client: Any) -> None:
    import dask.dataframe as dd
    import pandas as pd

    import adp
    from adp.models.api import register

    operator = signed_in(pages, "ops", "operator")
    empty = operator.get("/ui/models")
    assert empty.status_code == 200 and "The model registry is empty" in empty.text

    frame = dd.from_pandas(pd.read_parquet(pages.lake), npartitions=2)[["a", "b", "c"]]
    register(adp.create_detector("hbos").fit(frame), "sensors", stage="production")

    listed = operator.get("/ui/models").text
    assert '<td class="ref"><code>sensors@1</code></td>' in listed
    assert '<td class="stage">production</td>' in listed
    assert '<td class="detector">hbos</td>' in listed
    analyst = signed_in(pages, "alice", "analyst").get("/ui/models").text  # no models:use
    assert "sensors@1" not in analyst
    assert "your roles may use" in analyst


def test_the_stylesheet_is_served(pages: Site) -> None:
    answer = pages.http.get("/ui/static/style.css")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/css")
    assert "progress" in answer.text


# -- a real browser -----------------------------------------------------------------------
@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` on uvicorn on a free local port, in a thread; yields its base URL."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), 30)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def browser(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Headless Chromium under chromedriver, with a profile of its own."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        need_in_ci(
            f"{CHROMIUM} or {CHROMEDRIVER} is missing (Debian: apt-get install chromium "
            "chromium-driver)",
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=DriverService(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def follow(driver: Any, element: Any) -> None:
    """Click ``element`` and wait until the page it was on has gone."""
    from selenium.webdriver.support.wait import WebDriverWait

    page = driver.find_element("tag name", "html")
    element.click()
    WebDriverWait(driver, 30).until(lambda _: _gone(page))


def _gone(element: Any) -> bool:
    """Whether ``element``'s page has been replaced.

    Selenium's ``staleness_of`` only knows ``StaleElementReferenceException``; Chromium 156
    may instead answer "Node with given id does not belong to the document", a plain
    ``WebDriverException``, for an element of a page that has gone.
    """
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return True
        raise
    return False


def sign_in(driver: Any, base: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/ui/sign-in")
    driver.find_element(By.ID, "token").send_keys(token)
    follow(driver, driver.find_element(By.CSS_SELECTOR, "form.sign-in button"))


def row_state(driver: Any, job_id: str) -> str | None:
    """The state cell of ``job_id``'s row on the page shown now (None while it reloads).

    The page reloads itself while a job is active, so the cell is found and read in one
    script: a found element whose page then reloads fails to read in more ways than
    Selenium maps to ``StaleElementReferenceException`` (Chromium's "Node with given id
    does not belong to the document" is a plain ``WebDriverException``).
    """
    from selenium.common.exceptions import WebDriverException

    script = "const cell = document.querySelector(arguments[0]); return cell && cell.innerText;"
    try:
        text = driver.execute_script(script, f"#job-{job_id} .state")
    except WebDriverException:  # the page went away between the query and the read
        return None
    return str(text).strip() if text else None


@pytest.mark.slow
def test_a_team_member_follows_a_job_in_a_real_browser(
    tmp_path: Path, state_dir: Path, client: Any, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    from adp.service.api import create_app

    site = start_pages(tmp_path, client, run_jobs=True, max_running=1)
    try:
        with serve(create_app(site.service)) as base:
            driver = browser
            # not signed in: the pages send the browser to the form
            driver.get(f"{base}/ui/jobs")
            assert driver.current_url == f"{base}/ui/sign-in"
            # a bad token: the form again, with the reason (escaped: shown as text)
            sign_in(driver, base, "not-a-token")
            assert "not a well-formed JWT" in driver.find_element(By.ID, "reason").text
            sign_in(driver, base, "   ")  # blank: the form requires some text
            assert "Bearer <token>" in driver.find_element(By.ID, "reason").text

            token = site.token("alice", "analyst")
            sign_in(driver, base, token)
            assert driver.current_url == f"{base}/ui/jobs"
            assert driver.find_element(By.ID, "subject").text == "alice"

            # two jobs through the API; one runs at a time, so the second waits its turn
            ids = []
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as api:
                for name in ("svc", SCRIPT_NAME):
                    out = site.out / str(len(ids))
                    answer = api.post("/jobs", json=job_spec(site.lake, out, name=name))
                    assert answer.status_code == 202, answer.text
                    ids.append(answer.json()["id"])
            first, second = ids
            driver.get(f"{base}/ui/jobs")
            seen: list[str] = []

            def second_state() -> bool:  # the page reloads itself: no driver.get here
                state = row_state(driver, second)
                if state and (not seen or seen[-1] != state):
                    seen.append(state)
                return state == "succeeded"

            wait_for(second_state, timeout=240, every=0.2)
            assert seen[0] == "queued" and seen[-1] == "succeeded", seen
            assert row_state(driver, first) == "succeeded"
            name_cell = driver.find_element(By.CSS_SELECTOR, f"#job-{second} .name")
            assert name_cell.text == SCRIPT_NAME, "a job's name is shown as text"
            assert driver.title == "Jobs · ADP"
            assert not driver.find_elements(By.CSS_SELECTOR, "meta[http-equiv=refresh]")

            # the first job's page: summary, logs, audit records, then its report
            follow(driver, driver.find_element(By.CSS_SELECTOR, f"#job-{first} .id a"))
            assert driver.current_url == f"{base}/ui/jobs/{first}"
            assert driver.find_element(By.ID, "state").text == "succeeded"
            assert driver.find_element(By.ID, "rows").text == "2000"
            assert driver.find_element(By.ID, "anomalies").text.startswith("100 ")
            logs = driver.find_element(By.ID, "logs").text
            assert "queued by alice" in logs and "succeeded" in logs
            audit = [
                [cell.text for cell in tr.find_elements(By.TAG_NAME, "td")]
                for tr in driver.find_elements(By.CSS_SELECTOR, "#audit tbody tr")
            ]
            assert audit[0][1:4] == ["service.submit", "success", "alice"]
            assert any(r[1] == "job.run" and r[2] == "success" for r in audit), audit
            follow(driver, driver.find_element(By.ID, "report"))
            assert driver.current_url == f"{base}/ui/jobs/{first}/report"
            assert driver.title == "ADP report: svc"

            # another user sees neither the job in the list nor its page
            driver.get(f"{base}/ui/sign-out")
            assert driver.current_url == f"{base}/ui/sign-in"
            sign_in(driver, base, site.token("bob", "analyst"))
            assert driver.find_element(By.ID, "no-jobs")
            assert not driver.find_elements(By.ID, f"job-{first}")
            driver.get(f"{base}/ui/jobs/{first}")
            assert driver.find_element(By.ID, "status").text == "403"
            assert "jobs:read-all" in driver.find_element(By.ID, "message").text
    finally:
        site.service.close()
