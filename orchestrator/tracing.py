"""Job traces over OpenTelemetry, sent to ORCH_OTEL_ENDPOINT over OTLP/HTTP.

Each run of a job is a trace: a span for the run (job id, runbook, version, attempt, its status at the
end; an error status when it failed) with a child span per step (id, action, status, retries). Creating
a job makes an `enqueue` span in the creating process; its W3C traceparent travels with the job on the
queue (an arq keyword, orchestrator/queue.py) and the run links to it. A job enqueued again from the
database (`queue.reconcile`, the reaper) carries none: its run simply has no link.

Off unless ORCH_OTEL_ENDPOINT is set, and then free: `Services.tracing` is None, nothing of
OpenTelemetry is imported and no exporter thread runs; callers test that one attribute. Spans carry ids,
names, statuses and counts, never a job's inputs or a step's field values (they may hold secrets)."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when tracing starts, never when it is off
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

#: The attributes of the spans (OpenTelemetry has no conventions for a job runner's runs: ours are namespaced).
JOB_ID = "orchestrator.job.id"
RUNBOOK = "orchestrator.runbook"
RUNBOOK_VERSION = "orchestrator.runbook.version"
ATTEMPT = "orchestrator.job.attempt"
JOB_STATUS = "orchestrator.job.status"
PRIORITY = "orchestrator.job.priority"
STEP_ID = "orchestrator.step.id"
ACTION = "orchestrator.step.action"
STEP_STATUS = "orchestrator.step.status"
RETRIES = "orchestrator.step.retries"
#: Where OTLP/HTTP takes spans, under the collector's address.
TRACES_PATH = "/v1/traces"
#: A status description longer than this is cut (an error message; the job's own record keeps it whole).
DESCRIPTION_MAX = 500


def traces_url(endpoint: str) -> str:
    """The collector's address with the traces path (kept when the address already ends with it)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


class Tracing:
    """A process's tracer and its exporter: spans are batched and sent by a BatchSpanProcessor's
    thread, and whatever is left is sent when the process closes its services (`close`)."""

    def __init__(self, provider: TracerProvider, tracer: Tracer) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._provider = provider
        self._tracer = tracer
        self._api = trace  # looked up once: the hot path imports nothing
        self._propagator = TraceContextTextMapPropagator()
        self._root = context.Context()  # the parent of a run: none, whatever the caller's context holds

    @classmethod
    def open(cls, endpoint: str, service: str) -> Tracing:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from orchestrator.workers import version

        resource = Resource.create(
            {
                "service.name": service,
                "service.version": version(),
                "host.name": socket.gethostname(),
                "process.pid": os.getpid(),
            }
        )
        # Not shut down at exit by OpenTelemetry: Services.close does it, while the loop still runs.
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint))))
        return cls(provider, provider.get_tracer("orchestrator"))

    @contextlib.contextmanager
    def enqueue(self, job_id: str, runbook: str, priority: str) -> Iterator[str | None]:
        """The span of putting a new job on the queue; yields its traceparent for the job to carry."""
        api = self._api
        span = self._tracer.start_span(
            f"enqueue {runbook}",
            kind=api.SpanKind.PRODUCER,
            attributes={JOB_ID: job_id, RUNBOOK: runbook, PRIORITY: priority},
        )
        try:
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier, api.set_span_in_context(span, self._root))
            yield carrier.get("traceparent")
        except BaseException as exc:
            span.set_status(api.Status(api.StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            span.end()

    def run(self, job_id: str, attempt: int, job: dict[str, Any], link: str | None) -> RunTrace:
        """Start the span of a run, linked to its job's enqueue span when the job carried one (a
        traceparent that is not valid is no link)."""
        api = self._api
        linked = None
        if link:
            found = api.get_current_span(self._propagator.extract({"traceparent": link})).get_span_context()
            linked = found if found.is_valid else None
        span = self._tracer.start_span(
            f"run {job['runbook']}",
            context=self._root,
            kind=api.SpanKind.CONSUMER,
            attributes={
                JOB_ID: job_id,
                RUNBOOK: job["runbook"],
                RUNBOOK_VERSION: job["runbook_version"],
                ATTEMPT: attempt,
            },
            links=[api.Link(linked)] if linked is not None else (),
        )
        return RunTrace(self._tracer, api, span)

    def close(self) -> None:
        """Send what is left and stop the exporter's thread (blocking: at most its export timeout)."""
        self._provider.shutdown()


class RunTrace:
    """The spans of one run: its own, and the step now running."""

    def __init__(self, tracer: Tracer, api: Any, span: Span) -> None:
        self._tracer = tracer
        self._api = api
        self._span = span
        self._parent = api.set_span_in_context(span)  # of every step span
        self._step: Span | None = None
        self._status: str | None = None

    def step(self, step_id: str, action: str) -> None:
        """A step begins: its span, a child of the run's."""
        self._step = self._tracer.start_span(
            f"step {step_id}", context=self._parent, attributes={STEP_ID: step_id, ACTION: action}
        )

    def step_ended(self, status: str, retries: int, error: str | None) -> None:
        span, self._step = self._step, None
        if span is None:
            return
        span.set_attributes({STEP_STATUS: status, RETRIES: retries})
        self._fail_if(span, status, error)
        span.end()

    def finished(self, status: str, error: str | None) -> None:
        """The job's end as the run wrote it: its status, and its error when it failed."""
        self._status = status
        self._span.set_attribute(JOB_STATUS, status)
        self._fail_if(self._span, status, error)

    def end(self) -> None:
        """The run is over. One that did not finish its job (its worker stopped, a newer attempt took
        over, a bug) ends with an error status, as does a step it was in."""
        if self._step is not None:
            self.step_ended("interrupted", 0, "The run stopped during this step.")
        if self._status is None:
            self._fail_if(self._span, "interrupted", "The run stopped before its job ended.")
        self._span.end()

    def _fail_if(self, span: Span, status: str, error: str | None) -> None:
        if status in ("failed", "interrupted"):
            span.set_status(self._api.Status(self._api.StatusCode.ERROR, (error or "failed")[:DESCRIPTION_MAX]))


def enqueueing(tracing: Tracing | None, job_id: str, runbook: str, priority: str) -> AbstractContextManager[str | None]:
    """`tracing.enqueue(...)`, or nothing (yielding None) when tracing is off."""
    return nullcontext() if tracing is None else tracing.enqueue(job_id, runbook, priority)
