"""Real receivers of notifications for the tests: an SMTP server (aiosmtpd, on a free port, in a thread of
its own) that keeps every message it is sent, and an HTTP server that keeps every POST (a Slack webhook,
a generic webhook) and can be told to answer 500 the first N times; and hostile peers: one that trickles
an answer that never ends, and an SMTP server that refuses every recipient."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import socketserver
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


@contextlib.contextmanager
def trickler(head: bytes, tail: bytes, every_s: float = 0.2) -> Iterator[str]:
    """A hostile peer on a free port of 127.0.0.1: to each connection it sends `head` at once, then `tail`
    one byte every `every_s` seconds (looping), never finishing, until the block ends; yields
    `127.0.0.1:PORT`. As an HTTP receiver (head: a status line and headers announcing a huge body) it
    answers and never ends the body; with an empty head it never ends its status line or greeting."""
    stop = threading.Event()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.settimeout(every_s)
            with contextlib.suppress(OSError):
                self.request.sendall(head)
                sent = 0
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        self.request.recv(65536)  # what the client says is read and dropped
                    self.request.sendall(tail[sent % len(tail) : sent % len(tail) + 1])
                    sent += 1

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler), "trickler") as url:
        try:
            yield url.removeprefix("http://")
        finally:
            stop.set()


class _Refusing:
    """An SMTP handler that refuses every recipient, as a server that knows none of them does."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:  # noqa: N802
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"


@contextlib.contextmanager
def refusing_smtp_server() -> Iterator[str]:
    """A real SMTP server that refuses every recipient; yields its smtp:// URL."""
    port = free_port()
    controller = Controller(_Refusing(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}"
    finally:
        controller.stop()
