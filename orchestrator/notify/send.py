"""Sending one message to one channel: mail over SMTP (ORCH_SMTP_URL, STARTTLS when the server offers
it; written to the log when unset), a Slack incoming webhook, or a generic webhook signed with
`X-Orchestrator-Signature: sha256=HMAC` over the body. Each raises `SendError` with a message fit for
the job page: never the channel's URL, secret or the mail password."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import unquote

import httpx

from orchestrator.channels import Channel
from orchestrator.config import Settings, split_url
from orchestrator.notify.messages import Text
from orchestrator.workers import version

log = logging.getLogger(__name__)
TIMEOUT_S = 20.0
SIGNATURE_HEADER = "X-Orchestrator-Signature"


class SendError(Exception):
    """The message did not go out; the text says why, without secrets."""


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: a receiver computes the same over the raw body and compares."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post(channel: Channel, text: Text, delivery_id: int, sent_at: str) -> None:
    """A Slack or webhook channel's POST; any answer but 2xx is a failure (redirects are not followed)."""
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
        async with httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False, trust_env=False) as client:
            answer = await client.post(channel.target, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise SendError(
            f"{channel.kind} channel {channel.name}: {type(exc).__name__} ({_scrub(exc, channel)})"
        ) from None
    if not 200 <= answer.status_code < 300:
        raise SendError(f"{channel.kind} channel {channel.name}: the receiver answered HTTP {answer.status_code}")


def _scrub(exc: Exception, channel: Channel) -> str:
    """An exception's text without the channel's URL (its path may be the secret, as Slack's is)."""
    text = str(exc) or "no detail"
    if isinstance(channel.target, str):
        text = text.replace(channel.target, "<the channel's URL>")
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


async def send_mail(settings: Settings, channel: Channel, text: Text, evidence: bytes | None) -> bool:
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
        await asyncio.to_thread(_smtp, settings.smtp_url, message)
    except (OSError, smtplib.SMTPException) as exc:
        raise SendError(f"mail channel {channel.name}: {type(exc).__name__} ({_smtp_error(exc)})") from None
    return True


def _smtp(url: str, message: EmailMessage) -> None:
    parts = split_url(url)
    assert parts is not None and parts.hostname
    context = ssl.create_default_context()
    if parts.scheme == "smtps":
        server: smtplib.SMTP = smtplib.SMTP_SSL(parts.hostname, parts.port or 465, timeout=TIMEOUT_S, context=context)
    else:
        server = smtplib.SMTP(parts.hostname, parts.port or 25, timeout=TIMEOUT_S)
    with server:
        server.ehlo()
        if parts.scheme == "smtp" and server.has_extn("starttls"):
            server.starttls(context=context)
            server.ehlo()
        if parts.username:
            server.login(unquote(parts.username), unquote(parts.password or ""))
        server.send_message(message)


def _smtp_error(exc: Exception) -> str:
    """An SMTP error's text (a server's answer names no password; a socket error names no URL)."""
    if isinstance(exc, smtplib.SMTPResponseException):
        said = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"{exc.smtp_code} {said}"[:200]
    return (str(exc) or "no detail")[:200]
