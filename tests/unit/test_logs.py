"""The redacting log filter: what a line looks like once it has passed through it."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

import pytest

from orchestrator.logs import FORMAT, Redact

API = "orch_" + "A1b2-C3d4_" * 4 + "xyz"
HOOK = "orch_hook_" + "Zz9_-yY8" * 5 + "abc"
SESSION = "pQ3x" * 10 + "AbC.ZKx1aa.sig-Nature_0"


@contextlib.contextmanager
def writing(name: str, formatter: logging.Formatter) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose lines go, redacted and in `formatter`'s format, to a string."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.addFilter(Redact())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    with writing("tests.unit.logs", logging.Formatter(FORMAT)) as found:
        yield found


def test_an_access_log_line_keeps_its_shape_without_the_token(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = logged
    path = f"/api/v1/hooks/{HOOK}?also={API}"
    logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "POST", path, "1.1", 201)
    line = out.getvalue()
    assert '"POST /api/v1/hooks/orch_hook_[redacted]?also=orch_[redacted] HTTP/1.1" 201' in line
    assert HOOK not in line and API not in line


def test_headers_cookies_and_tracebacks_lose_their_secrets(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = logged
    headers = {"authorization": "Basic dXNlcjpwYXNzd29yZA==", "cookie": f"orch_session={SESSION}; theme=dark"}
    logger.warning("request headers %s", headers)
    logger.warning("upstream said: Authorization: Bearer abc.def-ghi rejected")
    try:
        raise ValueError(f"bad token {API}")
    except ValueError:
        logger.exception("failed on /api/v1/hooks/%s", HOOK)
    text = out.getvalue()
    for secret in (API, HOOK, SESSION, "dXNlcjpwYXNzd29yZA==", "abc.def-ghi"):
        assert secret not in text
    assert "orch_session=[redacted]; theme=dark" in text
    assert "ValueError: bad token orch_[redacted]" in text  # the traceback is still there, cleaned


def test_ordinary_lines_are_left_alone(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = logged
    logger.info("job %s of %s on orch_test_0a1b2c3d: %d steps", "j1", "demo-status", 4)
    assert out.getvalue().endswith("job j1 of demo-status on orch_test_0a1b2c3d: 4 steps\n")
