"""GET /metrics: the cluster's figures (orchestrator/metrics.py, the same from every web process) in
Prometheus' text format, with this process's own: the event streams it holds open, and its CPU,
memory and files (prometheus_client's process collector).

Who may read it: a token of the `metrics` role (which may read nothing else) or an admin (SPEC §9);
anyone when ORCH_METRICS_PUBLIC=1. Without a token: 401."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator import metrics
from orchestrator.auth import METRICS
from orchestrator.metrics import Figures
from orchestrator.services import Services
from web.auth import require

#: The classic text format, which every Prometheus reads (these names need none of version 1.0.0's escaping).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Scrape(Collector):
    """One scrape's metric families, from figures read just before (a collector's `collect` cannot wait
    for Redis or the database)."""

    def __init__(self, figures: Figures, streams: int) -> None:
        self.figures = figures
        self.streams = streams

    def collect(self) -> Iterable[Metric]:
        f = self.figures
        jobs_total = CounterMetricFamily(
            "orchestrator_jobs_total", "Jobs finished, by runbook and status.", labels=["runbook", "status"]
        )
        for (runbook, status), count in sorted(f.jobs_total.items()):
            jobs_total.add_metric([runbook, status], count)
        yield jobs_total
        durations = HistogramMetricFamily(
            "orchestrator_job_duration_seconds", "How long runs took, start to end, by runbook.", labels=["runbook"]
        )
        for runbook, histogram in sorted(f.durations.items()):
            durations.add_metric([runbook], histogram.buckets, histogram.sum)
        yield durations
        yield HistogramMetricFamily(
            "orchestrator_job_start_delay_seconds",
            "How long jobs waited from queued (or their scheduled time) to running.",
            buckets=f.start_delay.buckets,
            sum_value=f.start_delay.sum,
        )
        steps = CounterMetricFamily(
            "orchestrator_steps_total", "Steps finished, by action and status.", labels=["action", "status"]
        )
        for (action, status), count in sorted(f.steps_total.items()):
            steps.add_metric([action, status], count)
        yield steps
        yield self._counter(
            "orchestrator_sla_missed_total",
            "Service levels missed, by runbook and limit.",
            ["runbook", "limit"],
            f.sla_missed,
        )
        yield self._counter(
            "orchestrator_notifications_total",
            "Notifications tried, by event and outcome (sent, logged, pending: to be retried, failed: given up).",
            ["event", "status"],
            f.notifications,
        )
        active = GaugeMetricFamily("orchestrator_jobs", "Jobs in each active status now.", labels=["status"])
        for status, count in f.jobs.items():
            active.add_metric([status], count)
        yield active
        yield GaugeMetricFamily("orchestrator_workers", "Live worker processes.", value=f.workers)
        slots = GaugeMetricFamily(
            "orchestrator_worker_slots", "Job slots of the live workers, busy or free.", labels=["state"]
        )
        slots.add_metric(["busy"], f.busy_slots)
        slots.add_metric(["free"], f.free_slots)
        yield slots
        yield GaugeMetricFamily(
            "orchestrator_sse_connections", "Event streams this web process holds open.", value=self.streams
        )
        yield from ProcessCollector(registry=None).collect()

    @staticmethod
    def _counter(name: str, text: str, labels: list[str], counts: dict[tuple[str, str], int]) -> Metric:
        family = CounterMetricFamily(name, text, labels=labels)
        for values, count in sorted(counts.items()):
            family.add_metric(list(values), count)
        return family


async def scrape(request: Request) -> Response:
    if not request.app.state.settings.metrics_public:
        require(request, METRICS)
    svc: Services = request.app.state.svc
    figures = await metrics.read(svc.engine, svc.redis)
    body = generate_latest(Scrape(figures, request.app.state.streams.open))
    return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})


ROUTES = [Route("/metrics", scrape, methods=["GET"])]
