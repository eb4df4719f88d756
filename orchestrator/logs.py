"""Logging for every process: one line format, and no secret in any line. API and webhook tokens
(`orch_...`, `orch_hook_...`), bearer credentials, Authorization header values and session cookies
are replaced by `[redacted]` wherever they appear: in a message, its arguments (the access log's
request path), a traceback or a stack."""

from __future__ import annotations

import logging
import re

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"

_TOKEN = re.compile(r"orch_(hook_)?[A-Za-z0-9_-]{20,}")
_CREDENTIALS = (
    re.compile(r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,;}]+"),
    re.compile(r"(?i)(\bbearer\s+)[^\s\"',;]+"),
    re.compile(r"(orch_session=)[^;\s\"',]+"),
)


def redact(text: str) -> str:
    """`text` without tokens, bearer credentials, Authorization values or session cookies."""
    text = _TOKEN.sub(lambda m: f"orch_{m.group(1) or ''}{REDACTED}", text)
    for pattern in _CREDENTIALS:
        text = pattern.sub(rf"\g<1>{REDACTED}", text)
    return text


class Redact(logging.Filter):
    """Takes secrets out of every record it sees (on a handler: every record that handler writes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and all(a is None or isinstance(a, str | int | float) for a in args):
            # keep the arguments apart (uvicorn's access formatter unpacks them), each one cleaned
            record.msg = redact(str(record.msg))
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        else:
            message = record.getMessage()
            clean = redact(message)
            if clean != message:
                record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def guard(target: logging.Handler | logging.Logger) -> None:
    """Put a Redact filter on a handler or logger (once)."""
    if not any(isinstance(f, Redact) for f in target.filters):
        target.addFilter(Redact())


def configure(level: int = logging.INFO) -> None:
    """The logging of an `orchestrator` process: one format on standard error, every line redacted.
    `orchestrator web` lets uvicorn's loggers (its access log too) propagate to this handler."""
    logging.basicConfig(level=level, format=FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        guard(handler)


def redact_server_logs() -> None:
    """Redact uvicorn's own loggers however they are configured (such as `uvicorn --factory
    web.app:create_app` with uvicorn's default handlers): the access log line holds the request path,
    and a webhook's path holds its token."""
    for name in ("uvicorn.access", "uvicorn.error"):
        guard(logging.getLogger(name))
