"""The filtering HTTP proxy one job's browser context sends all its traffic through.

Chromium asks it for every request: https and WebSockets as CONNECT tunnels, plain http as absolute-form
requests, whatever started them (a step, a frame, a redirect, a popup, a download, a service worker). The
proxy resolves the host itself, checks the name and every address against the deployment's UrlPolicy, and
connects to an address it checked, so neither a redirect nor a DNS answer that changes between the check and
the connection (rebinding) reaches a refused address. A refused request gets a 403 and is recorded; the
run fails the step with it (worker/session.py, `check_where_the_page_went`).

It listens on a free loopback port, one per browser context; it is no more than the worker itself may reach.
Plain http is forwarded one request per connection (`Connection: close` both ways), so a request for one
host is never written to another host's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from orchestrator.urlpolicy import FAVICON, Target, UrlPolicy, Verdict, normal_host

log = logging.getLogger(__name__)

HEAD_LIMIT = 64 * 1024
CHUNK = 64 * 1024
CONNECT_TIMEOUT_S = 15.0
#: A request head must arrive within this; a connection that carries nothing for IDLE_S is closed, so
#: a site (or a page) that never closes cannot pile up open connections while a job waits for days.
HEAD_TIMEOUT_S = 30.0
IDLE_S = 120.0
#: Open client connections one proxy (one job's browser) may hold; more are answered 503.
MAX_CONNECTIONS = 256
#: The refusals a proxy remembers (a page may retry a refused request for as long as a job waits).
REFUSALS_KEPT = 1000
#: Headers about one connection, not the request: dropped when forwarding (RFC 9110 §7.6.1).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "upgrade"})
#: On the proxy's own answers (a refusal, a host it could not reach); dropped from every site's.
PROXY_HEADER = "x-orchestrator-proxy"


@dataclass(frozen=True)
class Refusal:
    url: str
    reason: str
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class Proxy:
    def __init__(self, policy: UrlPolicy) -> None:
        self._policy = policy
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()  # the browser's open connections
        self._upstreams: set[asyncio.StreamWriter] = set()  # and the connections made for them
        self.refused: deque[Refusal] = deque(maxlen=REFUSALS_KEPT)
        self._taken: datetime | None = None

    async def start(self) -> str:
        """Listen on a free loopback port; return the proxy's URL for Playwright's `proxy` option."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=HEAD_LIMIT)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def refuse(self, url: str, reason: str) -> None:
        """Record a refusal (the browser's own icon requests aside: those are not the page's doing)."""
        if urlsplit(url).path != FAVICON:
            log.info("the browser was refused a request: %s", reason)  # not the URL: it may hold a token
            self.refused.append(Refusal(url, reason))

    def refusals(self, since: datetime | None = None) -> list[Refusal]:
        return [r for r in self.refused if since is None or r.at >= since]

    def take(self, since: datetime | None) -> list[Refusal]:
        """The refusals since `since` not taken before; every refusal so far counts as taken afterwards."""
        taken, self._taken = self._taken, datetime.now(UTC)
        return [r for r in self.refusals(since) if taken is None or r.at > taken]

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in [*self._writers, *self._upstreams]:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            if len(self._writers) > MAX_CONNECTIONS:
                await _answer(writer, 503, "The browser has too many connections open through the worker.")
                return
            async with asyncio.timeout(HEAD_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            method, target, version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if method.upper() == "CONNECT":
                await self._tunnel(target, reader, writer)
            else:
                await self._forward(method, target, version, head, reader, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, TimeoutError):
            with contextlib.suppress(OSError):
                await _answer(writer, 400, "The proxy could not read this request.")
        except OSError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _tunnel(self, authority: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, _, port = authority.rpartition(":")
        target = Target("https", normal_host(host), int(port), path=None)
        async with self._upstream(target, target.origin, writer) as upstream:
            if upstream is not None:
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                await _both_ways(reader, writer, *upstream)

    async def _forward(
        self,
        method: str,
        url: str,
        version: str,
        head: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        target = Target.of(url)
        if target.scheme != "http":
            await _answer(writer, 400, "Only http requests are forwarded; https goes through CONNECT.")
            return
        async with self._upstream(target, url, writer) as upstream:
            if upstream is None:
                return
            up_reader, up_writer = upstream
            path = url.split("://", 1)[1].partition("/")[2]
            up_writer.write(_rewritten(f"{method} /{path} {version}", head))
            sending = asyncio.create_task(_pump(reader, up_writer))  # a request body, if any
            try:
                await _relay_response(up_reader, writer, target.host)
            finally:
                sending.cancel()

    @contextlib.asynccontextmanager
    async def _upstream(
        self, target: Target, url: str, writer: asyncio.StreamWriter
    ) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]:
        """`_open`, with the connection closed afterwards, and by `close` when the context ends first."""
        upstream = await self._open(target, url, writer)
        if upstream is not None:
            self._upstreams.add(upstream[1])
        try:
            yield upstream
        finally:
            if upstream is not None:
                self._upstreams.discard(upstream[1])
                upstream[1].close()

    async def _open(
        self, target: Target, url: str, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to a checked address of `target`, or None after answering why there is none."""
        verdict: Verdict = await self._policy.check(target)
        if verdict.refusal is not None:
            self.refuse(url, verdict.refusal)
            await _answer(writer, 403, f"The orchestrator refused this request: {verdict.refusal}.")
            return None
        if verdict.failure is not None:
            await _answer(writer, 502, f"The worker could not open this page: {verdict.failure}.")
            return None
        problem = "it has no address"
        for address in verdict.addresses:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    return await asyncio.open_connection(str(address), target.port, limit=HEAD_LIMIT)
            except TimeoutError:
                problem = "it did not answer in time"
            except OSError as exc:
                problem = (exc.strerror or str(exc)).lower()
        await _answer(writer, 502, f"The worker could not connect to {target.host}: {problem}.")
        return None


def _rewritten(first_line: str, head: bytes) -> bytes:
    """A request or response head with `first_line`, without hop-by-hop headers, and `Connection: close`."""
    lines = head.decode("latin-1").split("\r\n")[1:]
    named = {h.split(":", 1)[1].strip().lower() for h in lines if h.lower().startswith("connection:")}
    dropped = HOP_BY_HOP | {PROXY_HEADER} | {n.strip() for value in named for n in value.split(",")}
    kept = [h for h in lines if h and h.split(":", 1)[0].strip().lower() not in dropped]
    return "\r\n".join([first_line, *kept, "Connection: close", "", ""]).encode("latin-1")


async def _relay_response(up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
    """The upstream's answer: its heads (1xx ones first) told to close, then its body until it closes."""
    while True:
        try:
            head = await up_reader.readuntil(b"\r\n\r\n")
            status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            version, _, rest = status_line.partition(" ")
            if not version.startswith("HTTP/") or not rest[:3].isdigit():
                raise ValueError(status_line)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            await _answer(writer, 502, f"The site at {host} did not answer with HTTP.")
            return
        status = int(rest[:3])
        writer.write(_rewritten(status_line, head) if status != 101 else head)
        if status >= 200 or status == 101:
            break
    await _pump(up_reader, writer)


async def _both_ways(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    """A tunnel: bytes both ways until either side ends or both stay silent for IDLE_S; then both close."""
    ways = [asyncio.create_task(_pump(reader, up_writer)), asyncio.create_task(_pump(up_reader, writer))]
    try:
        await asyncio.wait(ways, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for way in ways:
            way.cancel()
        await asyncio.gather(*ways, return_exceptions=True)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until the reader ends (or says nothing for IDLE_S), then end the writer's side; a broken
    connection closes the writer."""
    try:
        while True:
            async with asyncio.timeout(IDLE_S):
                data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, TimeoutError):
        writer.close()


async def _answer(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    reasons = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway", 503: "Service Unavailable"}
    body = message.encode()
    head = (
        f"HTTP/1.1 {status} {reasons[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n{PROXY_HEADER}: {status}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode("latin-1") + body)
    await writer.drain()
