"""Every Redis key and channel the orchestrator uses, in one place (arq's own keys come from arq.constants).

Redis holds nothing the database cannot rebuild: the queue, wake-ups, leases, control signals, runbook
slots, rate counters and the latest live frame. The exceptions are the worker registry (rebuilt by the
next heartbeats) and the metrics counters (a flush resets them: Prometheus reads that as a counter reset)."""

from __future__ import annotations

#: A job's events were committed: `{job_id, id}` (orchestrator/events.py); web processes fan them out.
EVENTS_CHANNEL = "orch:events"
#: A watched job's live frame was stored under frame_key: `{job_id, seq, at, step_id}` (worker/screencast.py).
FRAMES_CHANNEL = "orch:frames"
#: A job was enqueued or a slot freed: idle workers poll now (orchestrator/queue.py).
WAKE_CHANNEL = "orch:wake"
#: A person acted on a running job: `{job_id, action}`; the worker running it obeys (worker/control.py).
CONTROL_CHANNEL = "orch:control"
#: Hash of runbook -> concurrency limit (orchestrator/limits.py).
LIMITS_KEY = "orch:limits"
#: Set of the ids of the worker processes that announced themselves (orchestrator/workers.py).
WORKERS_KEY = "orch:workers"
#: The cluster's counters and histograms, as hashes the workers add to (orchestrator/metrics.py): finished
#: jobs by runbook and status, job durations by runbook, start delays, finished steps by action and status.
METRICS_JOBS_KEY = "orch:metrics:jobs"
METRICS_DURATION_KEY = "orch:metrics:duration"
METRICS_DELAY_KEY = "orch:metrics:start-delay"
METRICS_STEPS_KEY = "orch:metrics:steps"
#: Service levels missed by runbook and limit, and notifications by event and how they ended (the
#: notifier in the scheduler adds to these).
METRICS_SLA_KEY = "orch:metrics:sla"
METRICS_NOTIFY_KEY = "orch:metrics:notifications"


def lease_key(job_id: str) -> str:
    """Held by the worker running a job (value: its attempt), renewed by a heartbeat (worker/lease.py)."""
    return f"orch:lease:{job_id}"


def frame_key(job_id: str) -> str:
    """The latest live frame of a watched job, short-lived."""
    return f"orch:frame:{job_id}"


def watch_key(job_id: str) -> str:
    """Alive while a page follows the job: the worker sends frames only then."""
    return f"orch:watch:{job_id}"


def slots_key(runbook: str) -> str:
    """The jobs holding a slot of a runbook with a concurrency limit."""
    return f"orch:slots:{runbook}"


def line_key(runbook: str) -> str:
    """The jobs waiting for a slot of the runbook, in queue order (queue.reconcile reads it too)."""
    return f"orch:line:{runbook}"


def rate_key(name: str) -> str:
    """A rate counter (orchestrator/ratelimit.py)."""
    return f"orch:rate:{name}"


def worker_key(worker_id: str) -> str:
    """A worker process's record (JSON), renewed by its heartbeat; it expires when the worker is long gone."""
    return f"orch:worker:{worker_id}"


def control_key(job_id: str) -> str:
    """Who holds the wheel of a waiting job's live browser (orchestrator/control.py): JSON, no TTL (its
    idleness is judged from `last_input_at`, so giving it back on expiry is audited)."""
    return f"orch:control:{job_id}"


def input_key(job_id: str) -> str:
    """The inputs sent to a job's live browser, in order, until its run dispatches them (never stored)."""
    return f"orch:input:{job_id}"


def page_url_key(job_id: str) -> str:
    """The URL of a waiting job's page, as its run last saw it (for the control audit)."""
    return f"orch:page-url:{job_id}"


def controls_of_key(user: str) -> str:
    """The jobs whose wheel a person holds: given back when they sign out."""
    return f"orch:controls-of:{user}"
