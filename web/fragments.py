"""The job page in pieces. Each piece of the page is one Jinja partial (web/templates/_*.html) that the
full page includes and that GET /jobs/{id}/parts renders alone, so a piece looks the same however it
reaches the browser. A live page asks for the pieces an event touched, by key:

    head  approval  metrics  steps  step:ID  children  records  records-more  record:SEQ
    io  artifacts  artifacts:STEP (the step's files)  artifact:ID  video  audit  notifications

What a running job's events ask for all the time (a step, its files, a record, the counts) is read
alone: a step's piece costs that step's row, not the job's five hundred. Pieces asked for now and then
(a status changed, the page catches up) are cut from the whole job object, as the page is. Each piece's
root element carries `data-part` (and `data-into`: the list a new item joins)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request

from orchestrator import approvers
from orchestrator.approvers import Person
from orchestrator.auth import APPROVE, RUN, Principal
from orchestrator.db import tables as t
from orchestrator.db.engine import reading
from orchestrator.errors import InvalidInput, JobNotFound
from orchestrator.schemas.common import parse_time
from orchestrator.services import Services
from orchestrator.states import PERMISSIONS, JobStatus, RecordStatus, allowed_actions
from orchestrator.views import artifact_url, artifact_view, job_summary, job_view, record_view, records_page, step_view
from web.auth import principal_of

#: The partial each kind of key renders.
TEMPLATES = {
    "head": "_job_head.html",
    "approval": "_approval.html",
    "metrics": "_metrics.html",
    "steps": "_steps.html",
    "step": "_step.html",
    "children": "_children.html",
    "records": "_records.html",
    "records-more": "_records_more.html",
    "record": "_record.html",
    "io": "_io.html",
    "artifacts": "_artifacts.html",
    "artifact": "_artifact.html",
    "video": "_video.html",
    "audit": "_audit.html",
    "notifications": "_notifications.html",
}
MAX_KEYS = 100
DECISIONS = frozenset({"approve", "reject"})
#: How long after a job ended its page waits for the session video (encoded once the job ended).
VIDEO_GRACE = timedelta(minutes=2)


def job_actions(job: dict[str, Any], principal: Principal | None) -> list[str]:
    """The buttons this person gets on the job now: the state table's actions (orchestrator/states.py)
    their role allows (approve and reject only for a person who may decide the pending request now:
    orchestrator/approvers.py), and `rerun` once the job ended. A run reported by another tool (no runbook
    version here) is never acted on here."""
    if principal is None or job["runbook_version"] is None:
        return []
    status = JobStatus(job["status"])
    found = [action.value for action in allowed_actions(status) if principal.can(PERMISSIONS[action])]
    if not approvers.may_decide(job.get("approval") or {}, Person.of(principal), principal.can(APPROVE)):
        found = [action for action in found if action not in DECISIONS]  # not named, or approved already
    if status.finished and principal.can(RUN):
        found.append("rerun")
    return found


def shown_metrics(job: dict[str, Any], steps: Sequence[Any]) -> dict[str, Any]:
    """A finished job's stored metrics; while it runs they are not written yet: counted from its steps."""
    if job["finished_at"]:
        return dict(job["metrics"] or {})
    count = Counter(s["status"] for s in steps)
    return {
        "steps_succeeded": count["success"],
        "steps_failed": count["failed"],
        "steps_skipped": count["skipped"],
        "retries": sum(s["retries"] or 0 for s in steps),
        "duration_s": None,
    }


def video_context(job: dict[str, Any], artifacts: list[dict[str, Any]]) -> dict[str, Any]:
    """The session video, and whether the page should wait for it (recorded, and not there yet)."""
    videos = [a for a in artifacts if a["kind"] == "video"]
    ended = _when(job["finished_at"])
    recent = ended is None or datetime.now(UTC) - ended < VIDEO_GRACE
    awaiting = bool(job.get("video")) and not videos and bool(job["started_at"]) and recent
    return {"video": videos[-1] if videos else None, "awaiting_video": awaiting}


def _when(value: str | None) -> datetime | None:
    return parse_time(value) if value else None


def page_context(request: Request, job: dict[str, Any], last_event: int) -> dict[str, Any]:
    """What job.html needs: the job object (orchestrator/views.py job_view) and what the partials work
    out of it, the same way as for a piece alone (`_context`)."""
    limit = request.app.state.svc.settings.job_records
    artifacts = job.get("artifacts") or []
    shots = sorted((a for a in artifacts if a["kind"] == "screenshot"), key=lambda a: a["created_at"] or "")
    return {
        **_context(request, job, job["steps"]),
        **video_context(job, artifacts),
        "records": job["records"],
        "records_page": job["records_page"],
        "records_query": {"status": "", "limit": limit},
        "latest_shot": shots[-1] if shots else None,
        "last_event": last_event,
    }


def _context(request: Request, job: dict[str, Any], steps: Sequence[Any]) -> dict[str, Any]:
    return {
        "job": job,
        "actions": job_actions(job, principal_of(request)),
        "metrics": shown_metrics(job, steps),
    }


#: The pieces of one item of a job, named after a colon (step:ID, record:SEQUENCE, artifact:ID, artifacts:STEP).
ITEMS = frozenset({"step", "record", "artifact", "artifacts"})


@dataclass
class Ask:
    """What a request for pieces asks: the keys as (kind, argument), and the records table's query."""

    keys: list[tuple[str, str]]
    status: str
    limit: int

    @classmethod
    def of(cls, request: Request) -> Ask:
        query = request.query_params
        asked = query.getlist("part")
        errors: dict[str, str] = {}
        if not asked or len(asked) > MAX_KEYS:
            errors["part"] = f"give 1 to {MAX_KEYS} pieces, e.g. part=head&part=step:open"
        # A piece of one item names it (step:ID); any other piece is the job's one, asked once however spelt.
        split = (key.partition(":") for key in asked)
        parsed = list(dict.fromkeys((kind, arg if kind in ITEMS else "") for kind, _, arg in split))
        unknown = sorted({kind for kind, _ in parsed if kind not in TEMPLATES})
        if unknown:
            errors["part"] = f"no piece is called {', '.join(unknown)}; pieces: {', '.join(TEMPLATES)}"
        status = query.get("status", "")
        if status and status not in set(RecordStatus):
            errors["status"] = f"must be empty or one of {', '.join(RecordStatus)}"
        raw = query.get("limit") or str(request.app.state.svc.settings.job_records)
        if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
            errors["limit"] = "must be a whole number from 1 to 10000"
        if errors:
            raise InvalidInput(errors)
        return cls(parsed, status, int(raw))


async def job_pieces(request: Request) -> list[tuple[str, dict[str, Any]]]:
    """The partials the keys of this request name, each with its context, in the order asked."""
    svc: Services = request.app.state.svc
    ask = Ask.of(request)
    async with reading(svc.engine) as conn:
        found = await Loader(conn, request.path_params["job_id"], ask).pieces(svc.settings.job_records)
    return [(TEMPLATES[kind], _context(request, **common) | own) for kind, common, own in found]


Piece = tuple[str, dict[str, Any], dict[str, Any]]  # (kind, job and its steps, what the partial adds)

#: Pieces cut from the whole job object (orchestrator/views.py job_view), read once for all of them;
#: `artifacts` (every file) is one too.
WHOLE = {"head", "approval", "io", "steps", "children", "video", "audit", "notifications"}


class Loader:
    """Reads what the asked pieces need, each once, however many keys need it."""

    def __init__(self, conn: AsyncConnection, job_id: str, ask: Ask) -> None:
        self.conn, self.job_id, self.ask = conn, job_id, ask
        self.job: dict[str, Any] = {}
        self.steps: Sequence[Any] = []  # what the metrics count (the status and retries of every step)

    async def pieces(self, records: int) -> list[Piece]:
        keys = self.ask.keys
        if any(kind in WHOLE or (kind == "artifacts" and not arg) for kind, arg in keys):
            self.job = await job_view(self.conn, self.job_id, records)
            self.steps = self.job["steps"]
        else:
            row = (await self.conn.execute(select(t.jobs).where(t.jobs.c.id == self.job_id))).mappings().first()
            if row is None:
                raise JobNotFound(f"No job has the id {self.job_id}.")
            self.job = job_summary(row)
            if ("metrics", "") in keys:
                query = select(t.steps.c.status, t.steps.c.retries).where(t.steps.c.job_id == self.job_id)
                self.steps = (await self.conn.execute(query)).mappings().all()
        found: list[Piece] = []
        for kind, arg in self.ask.keys:
            found += [(kind, {"job": self.job, "steps": self.steps}, own) for own in await self._read(kind, arg)]
        return found

    async def _read(self, kind: str, arg: str) -> list[dict[str, Any]]:
        """What the partial of one key adds to the job: one dict for each piece it renders."""
        reader = {
            "step": self._step,
            "records": self._records,
            "records-more": self._records_more,
            "record": self._record,
            "artifact": self._files,
            "artifacts": self._files,
        }.get(kind)
        if reader is not None:
            return await reader(kind, arg)
        return [video_context(self.job, self.job["artifacts"])] if kind == "video" else [{}]

    async def _step(self, kind: str, step_id: str) -> list[dict[str, Any]]:
        return [{"step": s} for s in await self._steps(step_id)]

    async def _records(self, kind: str, arg: str) -> list[dict[str, Any]]:
        page = await records_page(self.conn, self.job_id, self._statuses(), 0, self.ask.limit)
        query = {"status": self.ask.status, "limit": self.ask.limit}
        return [{"records": page["items"], "records_page": page, "records_query": query}]

    async def _records_more(self, kind: str, arg: str) -> list[dict[str, Any]]:
        """How many records there are and are shown (no rows read)."""
        where = [t.records.c.job_id == self.job_id, *(t.records.c.status == s for s in self._statuses())]
        total = (await self.conn.execute(select(func.count()).select_from(t.records).where(*where))).scalar() or 0
        shown = min(total, self.ask.limit)
        return [{"records_page": {"total": total, "count": shown, "next": shown < total}}]

    def _statuses(self) -> list[str]:
        return [self.ask.status] if self.ask.status else []

    async def _record(self, kind: str, sequence: str) -> list[dict[str, Any]]:
        number = int(sequence) if sequence.isdigit() else -1
        return [{"r": record_view(r)} for r in await self._rows(t.records, t.records.c.sequence == number)]

    async def _files(self, kind: str, arg: str) -> list[dict[str, Any]]:
        """artifact:ID, one file; artifacts:STEP, the files of a step; artifacts, every file (the job's)."""
        if kind == "artifacts" and not arg:
            return [{}]
        where = t.artifacts.c.id == arg if kind == "artifact" else t.artifacts.c.step_id == arg
        return [{"a": artifact_view(a)} for a in await self._rows(t.artifacts, where, order=t.artifacts.c.created_at)]

    async def _rows(self, table: Any, *where: Any, order: Any = None) -> list[Any]:
        query = select(table).where(table.c.job_id == self.job_id, *where)
        return list((await self.conn.execute(query.order_by(order) if order is not None else query)).mappings())

    async def _steps(self, step_id: str) -> list[dict[str, Any]]:
        """A step as the job object has it (orchestrator/views.py job_view): with the URL of its last
        screenshot, and where it starts in the session video."""
        rows = await self._rows(t.steps, t.steps.c.step_id == step_id)
        where = (t.artifacts.c.kind == "screenshot", t.artifacts.c.step_id == step_id)
        shots = [
            artifact_url(self.job_id, a["id"])
            for a in await self._rows(t.artifacts, *where, order=t.artifacts.c.created_at)
        ]
        steps = [step_view(s, shots[-1] if shots else None) for s in rows]
        began = _when((self.job["metrics"] or {}).get("video_started_at"))
        for step in steps:
            at = _when(step["started_at"])
            if began and at:
                step["video_offset_s"] = max(0.0, round((at - began).total_seconds(), 3))
        return steps
