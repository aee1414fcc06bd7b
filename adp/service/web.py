"""The team's web pages, served by the service beside its API: sign-in with a token, the
jobs (state, owner, progress, duration), one job's spec, summary, logs, audit records and
report, and the model registry.

Pages are Jinja2 templates rendered on the server (``templates/``, autoescaped) with one
stylesheet (``static/style.css``); no script runs on them. A page that shows a job in
progress reloads itself every :data:`REFRESH_SECONDS` seconds.

The pages go through the same doors as the API: the token is checked by the API's
``caller`` dependency (which accepts the :data:`TOKEN_COOKIE` the sign-in form sets, and
audits every refusal), and what a caller may see or do is decided by
:class:`adp.service.control.JobControl`. A page request without a valid token is
redirected to the sign-in form (303); a denial renders a 403 page and an unknown job a 404
page. The models page lists the registry's versions of the models the caller's roles may
use (``models:use``): deny by default holds for what the registry shows too.

The review page (``/ui/review``) shows an analyst the next row of a job's output to label
(:class:`adp.service.reviewing.ReviewDesk`, the application's ``state.review``): its score
and the threshold, its ``top_features`` with their values, and for time-keyed data the
rows before and after it for the same entity; its three buttons post the label, stored
under the token's subject and audited. It needs ``labels:write`` on the model.

The cookie is ``HttpOnly`` and ``SameSite=Strict`` (another site cannot make the browser
post a cancellation with it), ``Secure`` when the page was reached over HTTPS, and never
outlives the token.
"""

# No ``from __future__ import annotations``: FastAPI reads the page routes' annotations at
# run time, and they name ``Who``, a type made inside mount_pages from its ``caller``.
import datetime as dt
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import yaml
from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.routing import APIRoute, APIRouter
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from adp.errors import AccessDeniedError, AdpError, ConfigError, SpecError, one_line
from adp.service.control import JobNotFound
from adp.service.identity import AuthenticationError, Identity
from adp.service.server import Service
from adp.service.store import JobRecord

#: The cookie the sign-in form keeps the token in (the API's ``caller`` reads it too).
TOKEN_COOKIE = "adp_token"  # noqa: S105 - a cookie name, not a secret
#: Where a page request without a valid token is sent.
SIGN_IN = "/ui/sign-in"
#: How often a page showing a queued or running job reloads itself, in seconds.
REFRESH_SECONDS = 2
#: The longest message an error page shows.
MESSAGE_LIMIT = 600

_HERE = Path(__file__).parent
_ACTIVE = frozenset({"queued", "running"})
#: Sent with every page: nothing but the page's own stylesheet loads, nothing frames it.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: A job's report is served from the pages' origin, so it runs sandboxed, without scripts.
_REPORT_HEADERS = {
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

Caller = Callable[..., Identity]


def _when(value: dt.datetime | str | None) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SS UTC`` ("" for none)."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            return _when(dt.datetime.fromisoformat(value))
        except ValueError:
            return value
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float | None) -> str:
    """Seconds as ``4.2 s``, ``3 min 05 s`` or ``2 h 03 min`` ("" for none)."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["duration"] = _duration
    return env


_TEMPLATES = Jinja2Templates(env=_environment())


def _render(
    request: Request,
    template: str,
    who: Identity | None = None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """Render a page template (``who`` is shown in the header when signed in)."""
    return _TEMPLATES.TemplateResponse(
        request,
        template,
        {"who": who, **context},
        status_code=status_code,
        headers=_PAGE_HEADERS,
    )


def _error_page(request: Request, status: int, title: str, exc: BaseException) -> Response:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, JobNotFound) and text == request.path_params.get("job_id"):
        text = f"there is no job {text}"
    return _render(
        request,
        "error.html",
        status_code=status,
        status=status,
        title=title,
        message=one_line(str(text), MESSAGE_LIMIT),
    )


class PageRoute(APIRoute):
    """A page route: ADP's refusals become error pages instead of JSON answers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except AuthenticationError:  # the API's 401, which sends the browser to sign in
                raise
            except JobNotFound as exc:
                return _error_page(request, 404, "Not found", exc)
            except AccessDeniedError as exc:
                denials = getattr(request.app.state, "denials", None)
                if denials is not None:  # counted like the API's 403s
                    denials.labels("policy").inc()
                return _error_page(request, 403, "Forbidden", exc)
            except SpecError as exc:  # a request field at fault (a label that is not one)
                return _error_page(request, 422, "Invalid request", exc)
            except ConfigError as exc:  # a job in the wrong state (cancelling an ended one)
                return _error_page(request, 409, "Conflict", exc)

        return page


def _progress(record: JobRecord) -> dict[str, Any]:
    return {"stage": record.stage, "done": record.done, "total": record.total}


def _cookie_seconds(who: Identity, now: dt.datetime | None = None) -> int:
    """How long the cookie may live: until the token expires, not a second more."""
    now = now or dt.datetime.now(dt.UTC)
    return int((who.expires - now).total_seconds())


def _models(who: Identity, service: Service) -> tuple[list[Any], int]:
    """The registry's versions of models ``who``'s roles may use, and how many it holds."""
    from adp.models.api import default_registry

    versions = default_registry().versions()
    allowed = [
        v for v in versions if service.policy.decide(who.roles, "models:use", v.name).allowed
    ]
    return allowed, len(versions)


def mount_pages(app: FastAPI, service: Service, caller: Caller) -> None:
    """Add the web pages to the service's application.

    Parameters
    ----------
    app : fastapi.FastAPI
        The service's application (:func:`adp.service.api.create_app`).
    service : Service
        The started service.
    caller : callable
        The API's dependency that returns the verified :class:`Identity` of a request's
        bearer token or :data:`TOKEN_COOKIE`, and audits and answers 401 otherwise.
    """
    control = service.control
    router = APIRouter(route_class=PageRoute, include_in_schema=False)
    Who = Annotated[Identity, Depends(caller)]

    @app.middleware("http")
    async def _sign_in_first(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """A page refused for want of a valid token sends the browser to the sign-in form
        (the refusal was audited by ``caller``) and forgets a stale cookie."""
        response = await call_next(request)
        path = request.url.path
        if response.status_code == 401 and path.startswith("/ui/") and path != SIGN_IN:
            response = RedirectResponse(SIGN_IN, status_code=303)
            if TOKEN_COOKIE in request.cookies:
                response.delete_cookie(TOKEN_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @router.get("/")
    def home() -> Response:
        return RedirectResponse("/ui/jobs", status_code=303)

    @router.get(SIGN_IN)
    def sign_in_form(request: Request) -> Response:
        return _render(request, "sign_in.html", reason=None)

    @router.post(SIGN_IN)
    def sign_in(request: Request, token: Annotated[str, Form()] = "") -> Response:
        resource = f"{request.method} {request.url.path}"
        try:
            who = service.verifier.verify(token)
            seconds = _cookie_seconds(who)
            if seconds <= 0:
                raise AuthenticationError("the token has expired", "expired")
        except AuthenticationError as exc:
            service.audit_log.append(
                "auth.denied",
                action="authenticate",
                resource=resource,
                outcome="denied",
                reason=str(exc),
                identity="anonymous",
                source="service",
            )
            return _render(request, "sign_in.html", status_code=401, reason=str(exc))
        service.audit_log.append(
            "auth.sign-in",
            action="authenticate",
            resource=resource,
            details={"expires": who.expires.isoformat()},
            identity=who.subject,
            source="service",
        )
        response = RedirectResponse("/ui/jobs", status_code=303)
        response.set_cookie(
            TOKEN_COOKIE,
            token.strip(),
            max_age=seconds,
            expires=who.expires,
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    @router.get("/ui/sign-out")
    def sign_out() -> Response:
        response = RedirectResponse(SIGN_IN, status_code=303)
        response.delete_cookie(TOKEN_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @router.get("/ui/jobs")
    def jobs(request: Request, who: Who) -> Response:
        records = control.jobs(who)
        active = any(r.state in _ACTIVE for r in records)
        return _render(
            request,
            "jobs.html",
            who,
            jobs=[{"record": r, "progress": _progress(r)} for r in records],
            refresh=REFRESH_SECONDS if active else None,
        )

    @router.get("/ui/jobs/{job_id}")
    def job(request: Request, job_id: str, who: Who) -> Response:
        record = control.get(who, job_id)
        summary = record.summary or {}
        return _render(
            request,
            "job.html",
            who,
            job=record,
            progress=_progress(record),
            summary=summary,
            evaluation=summary.get("evaluation") or {},
            spec=yaml.safe_dump(record.spec_shown, sort_keys=False, allow_unicode=True),
            logs=control.logs(who, job_id),
            audit=service.audit_log.records(job_id=job_id),
            active=record.state in _ACTIVE,
            refresh=REFRESH_SECONDS if record.state in _ACTIVE else None,
        )

    @router.get("/ui/jobs/{job_id}/report")
    def report(job_id: str, who: Who) -> Response:
        path = control.report(who, job_id)
        return FileResponse(path, media_type="text/html", headers=_REPORT_HEADERS)

    @router.post("/ui/jobs/{job_id}/cancel")
    def cancel(job_id: str, who: Who) -> Response:
        control.cancel(who, job_id)
        return RedirectResponse(f"/ui/jobs/{job_id}", status_code=303)

    @router.get("/ui/models")
    def models(request: Request, who: Who) -> Response:
        try:
            versions, held = _models(who, service)
        except AdpError as exc:
            return _error_page(request, 503, "The model registry cannot be read", exc)
        return _render(request, "models.html", who, versions=versions, held=held)

    @router.get("/ui/review")
    def review(
        request: Request,
        who: Who,
        model: str = "",
        job: str = "",
        strategy: str = "uncertain",
        labelled: str = "",
    ) -> Response:
        from adp.feedback.strategies import STRATEGIES

        chosen = {"model": model, "job": job, "strategy": strategy}
        page: dict[str, Any] = {"strategies": STRATEGIES, "chosen": chosen, "labelled": labelled}
        jobs = [r for r in control.jobs(who, "succeeded") if "output" in r.spec]
        if not model.strip():
            return _render(request, "review.html", who, item=None, jobs=jobs, error=None, **page)
        try:
            item = request.app.state.review.next(who, model, job or None, strategy, 1)
        except SpecError as exc:
            return _render(
                request,
                "review.html",
                who,
                status_code=422,
                item=None,
                jobs=jobs,
                error=one_line(str(exc), MESSAGE_LIMIT),
                **page,
            )
        return _render(request, "review.html", who, item=item, jobs=jobs, error=None, **page)

    @router.post("/ui/review/label")
    def review_label(
        who: Who,
        model: Annotated[str, Form()],
        row_key: Annotated[str, Form()],
        label: Annotated[str, Form()],
        job: Annotated[str, Form()] = "",
        strategy: Annotated[str, Form()] = "uncertain",
        note: Annotated[str, Form()] = "",
    ) -> Response:
        # the analyst is ``who``, verified from the token: no form field names one
        app.state.review.label(who, model, row_key, label, job or None, note or None)
        query = urlencode({"model": model, "job": job, "strategy": strategy, "labelled": label})
        return RedirectResponse(f"/ui/review?{query}", status_code=303)

    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=_HERE / "static"), name="adp-static")


__all__ = ["REFRESH_SECONDS", "SIGN_IN", "TOKEN_COOKIE", "mount_pages"]
