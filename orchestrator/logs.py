"""Logging for every process: one line format (text, or one JSON object a line with ORCH_LOG_FORMAT=json),
what a line is about (job, step, attempt, worker) wherever it is known, and no secret in any line.

API and webhook tokens (`orch_...`, `orch_hook_...`), bearer credentials, Authorization header values and
session cookies are replaced by `[redacted]` wherever they appear: in a message, its arguments (the access
log's request path), a traceback or a stack. Inside a job's run, its secret inputs are masked too (`bind`)."""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from contextvars import ContextVar, Token
from types import TracebackType

from orchestrator.masking import mask_text

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"

_TOKEN = re.compile(r"orch_(hook_)?[A-Za-z0-9_-]{20,}")
_CREDENTIALS = (
    re.compile(r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,;}]+"),
    re.compile(r"(?i)(\bbearer\s+)[^\s\"',;]+"),
    re.compile(r"(orch_session=)[^;\s\"',]+"),
)
#: What every pattern above starts with: a text without any of these is left as it is, after one search.
_SUSPECT = re.compile(r"orch_|(?i:authorization|bearer)")

#: What the lines written in this context are about (job_id, step_id, attempt, worker), and the secrets
#: they must not show. Set by the worker process, the run loop and each step (`bind`); every task started
#: meanwhile inherits it, and nothing outside sees it.
Scope = tuple[dict[str, str | int], frozenset[str]]
_SCOPE: ContextVar[Scope] = ContextVar("orchestrator_log_scope", default=({}, frozenset()))
#: The fields of a JSON line that come from the scope (or from a record's `extra`), in this order.
FIELDS = ("job_id", "step_id", "attempt", "worker")


def bind(secrets: frozenset[str] = frozenset(), **fields: str | int) -> Token[Scope]:
    """Add `fields` to every line written from here on in this context (this task and those it starts),
    and mask `secrets` in them; `reset` with the token undoes this and every `bind` made after it."""
    known, hidden = _SCOPE.get()
    return _SCOPE.set(({**known, **fields}, (hidden | secrets) if secrets else hidden))


def reset(token: Token[Scope]) -> None:
    _SCOPE.reset(token)


def redact(text: str) -> str:
    """`text` without tokens, bearer credentials, Authorization values or session cookies."""
    if not _SUSPECT.search(text):
        return text
    text = _TOKEN.sub(lambda m: f"orch_{m.group(1) or ''}{REDACTED}", text)
    for pattern in _CREDENTIALS:
        text = pattern.sub(rf"\g<1>{REDACTED}", text)
    return text


class Redact(logging.Filter):
    """Takes secrets out of every record it sees (on a handler: every record that handler writes): tokens
    and credentials always, and the secret inputs of the run the line is written in."""

    def filter(self, record: logging.LogRecord) -> bool:
        hidden = _SCOPE.get()[1]

        def clean(text: str) -> str:
            return mask_text(redact(text), hidden)

        args = record.args
        if not hidden and isinstance(args, tuple) and all(a is None or isinstance(a, str | int | float) for a in args):
            # keep the arguments apart (uvicorn's access formatter unpacks them), each one cleaned
            record.msg = redact(str(record.msg))
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        else:
            message = record.getMessage()
            cleaned = clean(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = clean(record.exc_text)
        if record.stack_info:
            record.stack_info = clean(record.stack_info)
        return True


class JsonLines(logging.Formatter):
    """One JSON object a line: `ts` (ISO 8601, UTC), `level`, `logger`, `msg`, then `job_id`, `step_id`,
    `attempt` and `worker` where known (a record's `extra` first, else the scope of `bind`), and `exc`
    (the traceback) or `stack` when the record has one. Newlines inside values are escaped, so a
    traceback stays on its line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        known = _SCOPE.get()[0]
        for name in FIELDS:
            value = record.__dict__.get(name, known.get(name))
            if value is not None:
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def guard(target: logging.Handler | logging.Logger) -> None:
    """Put a Redact filter on a handler or logger (once)."""
    if not any(isinstance(f, Redact) for f in target.filters):
        target.addFilter(Redact())


def configure(level: int = logging.INFO, form: str = "text") -> None:
    """The logging of an `orchestrator` process, set here once: one format on standard error (`form`:
    text, or json for one JSON object a line), every line redacted. Every other logger (uvicorn's, its
    access log too, arq's, OpenTelemetry's) propagates to this handler; with json, so do Python's warnings
    and uncaught exceptions, so that every line on standard error is JSON."""
    logging.basicConfig(level=level, format=FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        guard(handler)
        if form == "json":
            handler.setFormatter(JsonLines())
    if form == "json":
        logging.captureWarnings(True)
        sys.excepthook = _uncaught
        threading.excepthook = lambda args: _uncaught(args.exc_type, args.exc_value, args.exc_traceback)


def _uncaught(kind: type[BaseException], error: BaseException | None, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        logging.getLogger("orchestrator").info("interrupted")
        return
    logging.getLogger("orchestrator").critical("uncaught exception", exc_info=(kind, error or kind(), tb))


def redact_server_logs() -> None:
    """Redact uvicorn's own loggers however they are configured (such as `uvicorn --factory
    web.app:create_app` with uvicorn's default handlers): the access log line holds the request path,
    and a webhook's path holds its token."""
    for name in ("uvicorn.access", "uvicorn.error"):
        guard(logging.getLogger(name))
