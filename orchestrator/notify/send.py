"""Sending one message to one channel: mail over SMTP (ORCH_SMTP_URL, STARTTLS when the server offers
it; written to the log when unset), a Slack incoming webhook, or a generic webhook signed with
`X-Orchestrator-Signature: sha256=HMAC` over the body. Each raises `SendError` with a message fit for
the job page: never the channel's URL, secret or the mail password.

Every send ends within `deadline_s` (DEADLINE_S), however the peer behaves: an HTTP answer's body is never
read (its status is all that counts), and an SMTP conversation that a server drags out byte by byte has
its socket shut when the time is up. So a hostile or stuck receiver costs one attempt's time, well within
the outbox's lease (orchestrator/notify/outbox.py), and never blocks the other messages."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import smtplib
import socket
import ssl
import threading
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import unquote, urlsplit

import httpx

from orchestrator.channels import Channel
from orchestrator.config import Settings, split_url
from orchestrator.notify.messages import Text
from orchestrator.workers import version

log = logging.getLogger(__name__)
#: Seconds one network operation (connect, one read) may take.
TIMEOUT_S = 20.0
#: Seconds one whole send may take (connect, TLS, the request or the SMTP conversation, the answer's head).
DEADLINE_S = 60.0
SIGNATURE_HEADER = "X-Orchestrator-Signature"


class SendError(Exception):
    """The message did not go out; the text says why, without secrets."""


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: a receiver computes the same over the raw body and compares."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post(channel: Channel, text: Text, delivery_id: int, sent_at: str, deadline_s: float = DEADLINE_S) -> None:
    """A Slack or webhook channel's POST; any answer but 2xx is a failure (redirects are not followed).
    Only the answer's status line and headers are read, within `deadline_s`."""
    assert isinstance(channel.target, str)
    if channel.kind == "slack":
        body = json.dumps(text.slack()).encode()
    else:
        body = json.dumps(text.payload(delivery_id, sent_at)).encode()
    headers = {"Content-Type": "application/json", "User-Agent": f"runbook-orchestrator/{version()}"}
    if channel.kind == "webhook":
        headers["X-Orchestrator-Event"] = text.event
        headers["X-Orchestrator-Delivery"] = str(delivery_id)
        if channel.secret:
            headers[SIGNATURE_HEADER] = sign(channel.secret, body)
    try:
        async with (
            asyncio.timeout(deadline_s),
            httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False, trust_env=False) as client,
            client.stream("POST", channel.target, content=body, headers=headers) as answer,
        ):
            status = answer.status_code  # the body (perhaps huge, perhaps never ending) is not read
    except TimeoutError:
        raise SendError(f"{channel.kind} channel {channel.name}: no answer within {deadline_s:g} s") from None
    except httpx.HTTPError as exc:
        raise SendError(
            f"{channel.kind} channel {channel.name}: {type(exc).__name__} ({_scrub(exc, channel)})"
        ) from None
    if not 200 <= status < 300:
        raise SendError(f"{channel.kind} channel {channel.name}: the receiver answered HTTP {status}")


def _scrub(exc: Exception, channel: Channel) -> str:
    """An exception's text without the channel's URL, its path or its query (the path may be the
    secret, as a Slack webhook's is)."""
    text = str(exc) or "no detail"
    if isinstance(channel.target, str):
        parts = urlsplit(channel.target)
        for secret in (channel.target, parts.path if len(parts.path) > 1 else "", parts.query):
            if secret:
                text = text.replace(secret, "<the channel's URL>")
    return text[:200]


def mail(settings: Settings, channel: Channel, text: Text, evidence: bytes | None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = ", ".join(channel.target if isinstance(channel.target, list) else [channel.target])
    message["Subject"] = text.subject
    message["Message-ID"] = make_msgid(domain=settings.mail_from.rsplit("@", 1)[1])
    message["X-Orchestrator-Event"] = text.event
    message.set_content(text.body + "\n")
    if evidence is not None:
        message.add_attachment(evidence, maintype="image", subtype="png", filename="evidence.png")
    return message


async def send_mail(
    settings: Settings, channel: Channel, text: Text, evidence: bytes | None, deadline_s: float = DEADLINE_S
) -> bool:
    """Mail the message; False when ORCH_SMTP_URL is unset and it was written to the log instead."""
    message = mail(settings, channel, text, evidence)
    if not settings.smtp_url:
        log.info(
            "notification mail not sent (ORCH_SMTP_URL is not set), to %s: %s (%s)",
            message["To"],
            text.subject,
            text.link,
        )
        return False
    try:
        await asyncio.to_thread(_smtp, settings.smtp_url, message, deadline_s)
    except (_Late, OSError, smtplib.SMTPException) as exc:
        raise SendError(f"mail channel {channel.name}: {_smtp_error(exc, deadline_s)}") from None
    return True


class _Late(Exception):
    """The SMTP conversation took longer than its deadline: its socket was shut."""


class _Watch:
    """Shuts the socket of the SMTP connection it follows once `deadline_s` has passed, wherever the
    conversation is (the greeting, EHLO, STARTTLS, the data), so that a server answering a byte at a
    time cannot hold a sender's thread longer: a blocked read returns at once and the conversation
    fails. (A TLS handshake under way is bounded by TIMEOUT_S a read only.)"""

    def __init__(self, deadline_s: float) -> None:
        self.late = False
        self._server: smtplib.SMTP | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(deadline_s, self._shut)
        self._timer.daemon = True
        self._timer.start()

    def follow(self, server: smtplib.SMTP) -> None:
        with self._lock:
            self._server = server

    def _shut(self) -> None:
        with self._lock:
            self.late = True
            sock = getattr(self._server, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        with self._lock:
            self._timer.cancel()
            self._server = None


class _Watched(smtplib.SMTP):
    """An SMTP connection followed by a `_Watch` from before it connects."""

    def __init__(self, host: str, port: int, watch: _Watch, timeout: float) -> None:
        watch.follow(self)
        smtplib.SMTP.__init__(self, host, port, timeout=timeout)  # connects and reads the greeting


class _WatchedSSL(_Watched, smtplib.SMTP_SSL):
    def __init__(self, host: str, port: int, watch: _Watch, timeout: float, context: ssl.SSLContext) -> None:
        # what SMTP_SSL's own __init__ sets (it is skipped: it would connect before the watch follows)
        self.context, self.keyfile, self.certfile = context, None, None
        _Watched.__init__(self, host, port, watch, timeout)


def _smtp(url: str, message: EmailMessage, deadline_s: float = DEADLINE_S) -> None:
    parts = split_url(url)
    assert parts is not None and parts.hostname
    context = ssl.create_default_context()
    watch, timeout = _Watch(deadline_s), min(TIMEOUT_S, deadline_s)
    server: _Watched | None = None
    try:
        if parts.scheme == "smtps":
            server = _WatchedSSL(parts.hostname, parts.port or 465, watch, timeout, context)
        else:
            server = _Watched(parts.hostname, parts.port or 25, watch, timeout)
        server.ehlo()
        secure = parts.scheme == "smtps"
        if parts.scheme == "smtp" and server.has_extn("starttls"):
            server.starttls(context=context)
            server.ehlo()
            secure = True
        if parts.username and not secure and not _loopback(parts.hostname):
            raise smtplib.SMTPNotSupportedError(
                "the server offers no STARTTLS: the password is not sent in the clear (use smtps:// or TLS)"
            )
        if parts.username:
            server.login(unquote(parts.username), unquote(parts.password or ""))
        server.send_message(message)
        with contextlib.suppress(smtplib.SMTPException, OSError):
            server.quit()
    except (OSError, smtplib.SMTPException) as exc:
        if watch.late:
            raise _Late() from exc
        raise
    finally:
        watch.stop()
        if server is not None:
            server.close()


def _loopback(host: str) -> bool:
    """Whether `host` is this machine (a local relay may take a password without TLS)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _smtp_error(exc: Exception, deadline_s: float) -> str:
    """What went wrong, fit for the job page: a server's answer names no password, a socket error no URL."""
    if isinstance(exc, _Late):
        return f"no answer within {deadline_s:g} s"
    name = type(exc).__name__
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{name} ({exc.smtp_code} {_said(exc.smtp_error)})"[:300]
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, said = next(iter(exc.recipients.values()), (0, b""))
        return f"{name} ({code} {_said(said)})"[:300]
    return f"{name} ({str(exc) or 'no detail'})"[:300]


def _said(answer: bytes | str) -> str:
    return answer.decode(errors="replace") if isinstance(answer, bytes) else str(answer)
