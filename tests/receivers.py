"""Real receivers of notifications for the tests: an SMTP server (aiosmtpd, on a free port, in a thread of
its own) that keeps every message it is sent, and an HTTP server that keeps every POST (a Slack webhook,
a generic webhook) and can be told to answer 500 the first N times."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from tests.support import free_port, serving


@dataclass
class Inbox:
    """What the SMTP server received: each message parsed, with the envelope's recipients."""

    url: str
    messages: list[EmailMessage] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)  # time.time() of each

    def wait(self, count: int = 1, seconds: float = 30) -> list[EmailMessage]:
        """The messages once at least `count` have come (a guard against hangs, not a speed check)."""
        deadline = time.monotonic() + seconds
        while len(self.messages) < count:
            assert time.monotonic() < deadline, f"{len(self.messages)} of {count} mail(s) came in {seconds} s"
            time.sleep(0.05)
        return self.messages


class _Handler:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.inbox.recipients.append(list(envelope.rcpt_tos))
        self.inbox.messages.append(parsed)
        self.inbox.arrived.append(time.time())
        return "250 OK"


@contextlib.contextmanager
def smtp_server() -> Iterator[Inbox]:
    """A real SMTP server on 127.0.0.1 (no TLS, no auth: the orchestrator sends in the clear when the
    server offers no STARTTLS)."""
    port = free_port()
    inbox = Inbox(f"smtp://127.0.0.1:{port}")
    controller = Controller(_Handler(inbox), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """What the HTTP receiver got, and how many more POSTs it answers with 500 (`failures`)."""

    url: str
    posts: list[Post] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)  # the status of every POST, in order
    failures: int = 0

    def wait(self, count: int = 1, seconds: float = 30) -> list[Post]:
        deadline = time.monotonic() + seconds
        while len(self.posts) < count:
            assert time.monotonic() < deadline, f"{len(self.posts)} of {count} post(s) came in {seconds} s"
            time.sleep(0.05)
        return self.posts


@contextlib.contextmanager
def http_receiver() -> Iterator[Receiver]:
    """An HTTP server on a free port of 127.0.0.1 that keeps every POST (answering 204, or 500 while
    `failures` lasts)."""
    receiver = Receiver("")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
            pass

        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                status = 500 if receiver.failures > 0 else 204
                receiver.failures = max(0, receiver.failures - 1)
                receiver.answered.append(status)
                if status == 204:
                    receiver.posts.append(Post(self.path, dict(self.headers.items()), body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler), "receiver") as url:
        receiver.url = url
        yield receiver
