"""The service's HTTP API (FastAPI): jobs, their logs and reports, health and metrics.

Every route but ``/healthz``, ``/metrics`` and the OpenAPI pages (``/docs``,
``/openapi.json``) needs a bearer token (``Authorization: Bearer <jwt>``); a token that
does not verify is answered 401 after its denial is audited. What a verified caller may
do is decided in :class:`adp.service.control.JobControl`. ADP's errors map to HTTP
statuses: a spec that does not validate 422 (the field named), a policy denial 403, an
unknown job 404, a job in the wrong state 409.

The analyst-feedback routes (``GET /review/next``, ``POST /labels``) go through
:class:`adp.service.reviewing.ReviewDesk`: ``labels:write`` on the model, labels stored
under the token's subject.
"""

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field

from adp.errors import AccessDeniedError, ConfigError, SpecError, one_line
from adp.service.control import JobNotFound
from adp.service.identity import AuthenticationError, Identity
from adp.service.reviewing import CONTEXT_ROWS, MAX_ROWS, ReviewDesk
from adp.service.server import Service
from adp.service.store import STATES
from adp.service.web import TOKEN_COOKIE, mount_pages

#: The longest error text an answer carries.
DETAIL_LIMIT = 600


class Unauthenticated(Exception):
    """No valid token: answered 401."""


class LabelRequest(BaseModel):
    """``POST /labels``: one analyst's answer about one row. The analyst is the token's
    subject; a body naming anyone (``who``) is refused as an unknown field."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="The model reviewed: name or name@version")
    row_key: str | dict[str, Any] = Field(description="The row's key, as /review/next gives it")
    label: str = Field(description="anomaly, normal or unsure")
    job: str | None = Field(None, description="The job whose output the row is from")
    note: str | None = Field(None, description="Why (kept with the label)")


class _JobsByState(Collector):
    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "adp_service_jobs", "Jobs the service holds, by state", labels=["state"]
        )
        for state, count in self.service.store.counts().items():
            gauge.add_metric([state], count)
        yield gauge


def _metrics(service: Service) -> tuple[CollectorRegistry, Counter, Counter]:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_JobsByState(service))
    submitted = Counter(
        "adp_service_submissions", "Job submissions, by outcome", ["outcome"], registry=registry
    )
    denied = Counter("adp_service_denials", "Requests denied, by kind", ["kind"], registry=registry)
    return registry, submitted, denied


def create_app(service: Service, *, close_on_shutdown: bool = False) -> FastAPI:
    """The FastAPI application of ``service`` (``adp serve`` runs it on uvicorn).

    Parameters
    ----------
    service : Service
        The started service.
    close_on_shutdown : bool, default False
        Close the service when the application shuts down (uvicorn's SIGTERM or SIGINT):
        running jobs end ``interrupted``, its cluster is closed.

    Returns
    -------
    fastapi.FastAPI
    """
    from importlib.metadata import version

    desk = ReviewDesk(service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(desk.close)
        if close_on_shutdown:
            await run_in_threadpool(service.close)

    app = FastAPI(
        lifespan=lifespan,
        title="ADP service",
        version=version("adp"),
        description="Submit anomaly-detection jobs to a shared Dask cluster and follow them.",
    )
    app.state.service = service
    app.state.review = desk  # the review page uses it too
    registry, submitted, denied = _metrics(service)
    app.state.denials = denied  # the pages count their 403s here too
    bearer = HTTPBearer(auto_error=False, description="A JWT (adp token issue)")
    control = service.control

    def caller(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Identity:
        token = credentials.credentials if credentials else request.cookies.get(TOKEN_COOKIE)
        try:
            return service.verifier.verify(token)
        except AuthenticationError as exc:
            denied.labels(f"token-{exc.reason}").inc()
            service.audit_log.append(
                "auth.denied",
                action="authenticate",
                resource=f"{request.method} {request.url.path}",
                outcome="denied",
                reason=str(exc),
                details={"reason": exc.reason},
                identity="anonymous",
                source="service",
            )
            if exc.reason == "configuration":  # the full text names server paths: audit only
                raise Unauthenticated("the service cannot verify tokens now") from None
            raise Unauthenticated(str(exc)) from None

    Caller = Annotated[Identity, Depends(caller)]

    def error(status: int, exc: BaseException) -> JSONResponse:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return JSONResponse({"detail": one_line(str(text), DETAIL_LIMIT)}, status_code=status)

    @app.exception_handler(Unauthenticated)
    async def _unauthenticated(request: Request, exc: Unauthenticated) -> Response:
        response = error(401, exc)
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(AccessDeniedError)
    async def _denied(request: Request, exc: AccessDeniedError) -> Response:
        denied.labels("policy").inc()
        return error(403, exc)

    @app.exception_handler(JobNotFound)
    async def _not_found(request: Request, exc: JobNotFound) -> Response:
        return error(404, exc)

    @app.exception_handler(SpecError)
    async def _invalid(request: Request, exc: SpecError) -> Response:
        return error(422, exc)

    @app.exception_handler(ConfigError)
    async def _conflict(request: Request, exc: ConfigError) -> Response:
        return error(409, exc)

    @app.post("/jobs", status_code=202, tags=["jobs"], summary="Submit a job (YAML or JSON)")
    async def submit(request: Request, who: Caller) -> dict[str, Any]:
        body = await request.body()
        try:
            record = await run_in_threadpool(control.submit, who, body)
        except (SpecError, AccessDeniedError):
            submitted.labels("refused").inc()
            raise
        submitted.labels("queued").inc()
        return {"id": record.id, "state": record.state}

    @app.get("/jobs", tags=["jobs"], summary="Your jobs (every job for an operator)")
    def jobs(who: Caller, state: str | None = None) -> dict[str, Any]:
        if state is not None and state not in STATES:
            raise SpecError(f"state={state!r} is not one of {', '.join(STATES)}")
        return {"jobs": [record.public() for record in control.jobs(who, state)]}

    @app.get("/jobs/{job_id}", tags=["jobs"], summary="A job's state, progress and summary")
    def job(job_id: str, who: Caller) -> dict[str, Any]:
        return control.get(who, job_id).public()

    @app.get("/jobs/{job_id}/logs", tags=["jobs"], response_class=PlainTextResponse)
    def logs(job_id: str, who: Caller) -> str:
        return "\n".join(control.logs(who, job_id)) + "\n"

    @app.get("/jobs/{job_id}/report", tags=["jobs"], response_class=FileResponse)
    def report(job_id: str, who: Caller) -> FileResponse:
        return FileResponse(control.report(who, job_id), media_type="text/html")

    @app.post("/jobs/{job_id}/cancel", status_code=202, tags=["jobs"])
    def cancel(job_id: str, who: Caller) -> dict[str, Any]:
        return control.cancel(who, job_id).public()

    @app.post("/jobs/{job_id}/resume", status_code=202, tags=["jobs"])
    def resume(job_id: str, who: Caller) -> dict[str, Any]:
        return control.resume(who, job_id).public()

    @app.get("/whoami", tags=["identity"], summary="Who the token says you are")
    def whoami(who: Caller) -> dict[str, Any]:
        return {"subject": who.subject, "roles": list(who.roles), "issuer": who.issuer}

    @app.get("/review/next", tags=["feedback"], summary="The next rows of a job to label")
    def review_next(
        who: Caller,
        model: str,
        job: str | None = None,
        strategy: str = "uncertain",
        n: int = 1,
        context: int = CONTEXT_ROWS,
    ) -> dict[str, Any]:
        if not 1 <= n <= MAX_ROWS:
            raise SpecError(f"n: give a number of rows from 1 to {MAX_ROWS}, got {n}")
        return desk.next(who, model, job, strategy, n, context)

    @app.post("/labels", status_code=201, tags=["feedback"], summary="Label a row (as yourself)")
    def add_label(body: LabelRequest, who: Caller) -> dict[str, Any]:
        return desk.label(who, body.model, body.row_key, body.label, body.job, body.note)

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, Any]:
        counts = service.store.counts()
        return {"status": "ok", "running": counts.get("running", 0), "jobs": counts}

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    mount_pages(app, service, caller)
    return app


__all__ = ["TOKEN_COOKIE", "create_app"]
