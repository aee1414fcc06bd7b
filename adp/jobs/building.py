"""What a job spec builds before it runs: its output section, sink, detector and threshold
(each refusing a spec that lacks what it needs with the section to add)."""

from __future__ import annotations

from typing import Any

from adp.detect.base import BaseDetector
from adp.detect.detector import create_detector
from adp.detect.threshold import Threshold, from_spec
from adp.errors import SpecError
from adp.io.sinks import Sink, sink_for
from adp.jobs.spec import JobSpec, OutputSpec, SourceSpec


def job_output(spec: JobSpec) -> OutputSpec:
    """The spec's output section; a :class:`~adp.errors.SpecError` when it has none."""
    if spec.output is None:
        raise SpecError(
            "the job spec has no 'output' section: add one (a folder uri, or a database url "
            "with table) to run a score job"
        )
    return spec.output


def job_sink(spec: JobSpec, resume_key: str | None = None) -> Sink:
    """The sink of the spec's output section (checked before any work); resumable under
    ``resume_key`` when given (see :class:`adp.io.sinks.FolderSink`)."""
    output = job_output(spec)
    return sink_for(
        output.uri,
        table=output.table,
        mode=output.mode,
        storage_options=output.storage_options,
        key=spec.source.key,
        sources=[spec.source],
        resume_key=resume_key,
    )


def staging_stamp(spec: JobSpec, model_digest: str, frame: Any) -> str:
    """What a job's staged scores depend on: the fitted model (the SHA-256 of its pickled
    bytes), the source's fingerprint (its file listing, or its frame) and the source
    section. A resumed attempt reuses staged scores only for the same stamp, so another
    model, or changed data, computes them again."""
    import hashlib

    from adp.models.fingerprint import fingerprint_source

    digest = hashlib.sha256(model_digest.encode())
    source = spec.source
    digest.update(fingerprint_source(source.uri, frame, source.storage_options).encode())
    digest.update(source.model_dump_json().encode())
    return digest.hexdigest()


def require_detector(spec: JobSpec) -> None:
    """Refuse a spec without a detector section (:class:`~adp.errors.SpecError`)."""
    if spec.detector is None:
        raise SpecError(
            "the job spec has no 'detector' section: add one (name with params, or a "
            "registered model name@version) to run a score job"
        )


def build_detector(spec: JobSpec) -> BaseDetector:
    """The spec's detector: a registered model (loaded, fitted) or a new one by name."""
    require_detector(spec)
    assert spec.detector is not None
    if spec.detector.model is not None:
        from adp.models import load_detector

        detector: BaseDetector = load_detector(spec.detector.model)
        _check_missing_policy(spec.source, spec.detector.model, detector)
        return detector
    if spec.detector.name is None:  # the spec's validator requires name or model
        raise SpecError("detector: give 'name' (with 'params') or 'model'")
    if spec.context is not None:
        if "context" in spec.detector.params:
            raise SpecError(
                "give the context in the job's 'context' section, not in detector.params"
            )
        context = spec.context.to_context()
        return create_detector(spec.detector.name, context=context, **spec.detector.params)
    return create_detector(spec.detector.name, **spec.detector.params)


def _check_missing_policy(source: SourceSpec, ref: str, detector: BaseDetector) -> None:
    """A registered model scores with its fitted missing policy; refuse a spec that
    explicitly asks for another one."""
    fitted = getattr(detector, "missing_", "fail")
    if "missing" in source.model_fields_set and source.missing != fitted:
        raise SpecError(
            f"source.missing is {source.missing!r} but model {ref!r} was fitted with "
            f"missing={fitted!r}, which it applies when scoring; remove source.missing or "
            "set it to the model's policy"
        )


def job_threshold(spec: JobSpec) -> Threshold | float | str | None:
    """The spec's threshold section as the ``threshold`` argument of detection."""
    t = spec.threshold
    if t.score is not None:
        return float(t.score)
    if isinstance(t.contamination, str):
        return t.contamination  # "auto"
    if t.contamination is not None:
        return from_spec(contamination=t.contamination)
    return None  # the detector's own contamination


__all__ = [
    "build_detector",
    "job_output",
    "job_sink",
    "job_threshold",
    "require_detector",
    "staging_stamp",
]
