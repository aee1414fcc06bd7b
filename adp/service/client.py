"""A small client of the ADP service, for notebooks and scripts (``adp submit`` and
``adp jobs`` use it too).

>>> from adp.service.client import ServiceClient  # doctest: +SKIP
>>> jobs = ServiceClient("http://adp.internal:8642", token=TOKEN)  # doctest: +SKIP
>>> job_id = jobs.submit("jobs/sensors.yaml")  # doctest: +SKIP
>>> jobs.wait(job_id)["state"]  # doctest: +SKIP
'succeeded'
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from adp.errors import AccessDeniedError, AdpError, ConfigError, SourceError, SpecError
from adp.jobs.spec import JobSpec

#: States a job does not leave by itself.
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "interrupted"})


class ServiceError(AdpError):
    """The service answered with an error (its message is the service's own)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _raise_for(response: httpx.Response, url: str) -> None:
    if response.is_success:
        return
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    detail = str(detail)[:600]
    status = response.status_code
    if status in (401, 403):
        raise AccessDeniedError(f"{url}: {detail}")
    if status == 422:
        raise SpecError(detail)
    if status in (404, 409):
        raise ConfigError(detail)
    raise ServiceError(f"the service at {url} answered {status}: {detail}", status)


class ServiceClient:
    """Talk to ``adp serve``.

    Parameters
    ----------
    url : str, optional
        The service's base URL; default ``adp.service.url``.
    token : str, optional
        A bearer token (``adp token issue``); default ``adp.service.token``.
    timeout : float, default 30
        Seconds to wait for any one answer.
    """

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0):
        from adp.config import settings

        options = settings().service
        self.url = (url or options.url).rstrip("/")
        token = token or options.token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __repr__(self) -> str:
        return f"ServiceClient({self.url!r})"

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise SourceError(
                f"cannot reach the ADP service at {self.url} ({type(exc).__name__}: {exc}); "
                "is `adp serve` running there? (--server URL or adp.service.url)"
            ) from None
        _raise_for(response, self.url)
        return response

    # -- jobs --------------------------------------------------------------------------
    def submit(self, spec: str | Path | Mapping[str, Any] | JobSpec) -> str:
        """Submit a job and return its id at once (the service runs it).

        Parameters
        ----------
        spec : path, mapping or JobSpec
            A YAML file, a mapping, or a validated spec. It is validated here first, and
            relative paths are resolved against this process's working directory.
        """
        if isinstance(spec, JobSpec):
            parsed = spec
        elif isinstance(spec, Mapping):
            parsed = JobSpec.from_dict(dict(spec))
        else:
            parsed = JobSpec.from_yaml(spec)
        answer = self._call("POST", "/jobs", json=parsed.to_dict()).json()
        return str(answer["id"])

    def submit_stream(self, spec: str | Path | Mapping[str, Any]) -> str:
        """Submit a stream (an ``adp stream`` spec) as a job; return its id at once.

        The service consumes it on the cluster until it ends (``max_events`` or
        ``until_idle`` are not service options: a stream job runs until cancelled),
        governed by the policy's ``stream:read`` / ``stream:write`` permissions.

        Parameters
        ----------
        spec : path or mapping
            A YAML stream spec or a mapping, validated here first (relative paths resolved
            against this process's working directory).
        """
        from adp.stream.spec import StreamSpec

        if isinstance(spec, Mapping):
            parsed = StreamSpec.from_dict(dict(spec))
        else:
            parsed = StreamSpec.from_yaml(spec)
        answer = self._call("POST", "/jobs", json={"stream": parsed.to_dict()}).json()
        return str(answer["id"])

    def jobs(self, state: str | None = None) -> list[dict[str, Any]]:
        """Your jobs (every job for an operator), newest first."""
        params = {"state": state} if state else None
        return list(self._call("GET", "/jobs", params=params).json()["jobs"])

    def status(self, job_id: str) -> dict[str, Any]:
        """A job's state, owner, progress, summary and timings."""
        return dict(self._call("GET", f"/jobs/{job_id}").json())

    def logs(self, job_id: str) -> str:
        """The job's log."""
        return self._call("GET", f"/jobs/{job_id}/logs").text

    def report(self, job_id: str) -> str:
        """The job's HTML report."""
        return self._call("GET", f"/jobs/{job_id}/report").text

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job."""
        return dict(self._call("POST", f"/jobs/{job_id}/cancel").json())

    def resume(self, job_id: str) -> dict[str, Any]:
        """Queue a failed, cancelled or interrupted job again."""
        return dict(self._call("POST", f"/jobs/{job_id}/resume").json())

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.5) -> dict[str, Any]:
        """Wait until the job ends and return its status.

        Raises
        ------
        TimeoutError
            When ``timeout`` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status(job_id)
            if status["state"] in TERMINAL:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {status['state']} after {timeout} s")
            time.sleep(poll)

    def whoami(self) -> dict[str, Any]:
        """Who the service takes you for."""
        return dict(self._call("GET", "/whoami").json())


__all__ = ["ServiceClient", "ServiceError"]
