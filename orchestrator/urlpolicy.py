"""Which addresses a runbook's browser may open (SPEC §3, `ORCH_ALLOWED_HOSTS` / `ORCH_DENIED_HOSTS`).

http and https only. Entries of either list are host names (`example.com`), `*.wildcards` (`*.example.com`:
the host and its subdomains), IP addresses and CIDR ranges (`10.0.0.0/8`, `fd00::/8`). A host is checked by
its name and by every address it resolves to, so a name that points at a refused address is refused too.

Refused unless ORCH_ALLOWED_HOSTS names them: link-local and cloud metadata addresses and names, and the
orchestrator's own web app (its `ORCH_PUBLIC_URL` and `ORCH_HOST:ORCH_PORT`) except its demo pages under
`/demo/`. A built-in refusal of a name is lifted by an allowed entry that matches the name, one of an address
by an allowed IP or CIDR entry that contains the address (so an allowed `*.example.com` never opens a
subdomain that resolves to a metadata address). ORCH_DENIED_HOSTS always wins. Everything else (intranet
ranges, other loopback ports) is allowed while ORCH_ALLOWED_HOSTS is empty.

The worker enforces this in a filtering proxy that resolves each host itself and connects to the address it
checked (worker/proxy.py); here is only the decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from orchestrator.config import Settings

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Link-local ranges (every cloud's 169.254.169.254, ECS's 169.254.170.2, Tencent's 169.254.0.23) and the
#: metadata services elsewhere: Alibaba Cloud, AWS over IPv6, Azure's WireServer, Oracle Cloud Classic.
METADATA_NETWORKS: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",
        "fe80::/10",
        "100.100.100.200/32",
        "fd00:ec2::254/128",
        "168.63.129.16/32",
        "192.0.0.192/32",
    )
)
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
        "metadata.platformequinix.com",
    }
)
#: The app's own pages a runbook may open: the demo target site (runbooks/demo, served at /demo/), and the
#: icon Chromium asks each origin for by itself.
DEMO_PATH = "/demo"
FAVICON = "/favicon.ico"
RESOLVE_TIMEOUT_S = 10.0


def normal_host(host: str) -> str:
    """A host as the lists compare it: lower case, no brackets, no trailing dot, IDNA-encoded."""
    host = host.strip().lower().strip("[]").rstrip(".")
    if not host.isascii():
        with contextlib.suppress(UnicodeError):
            host = host.encode("idna").decode("ascii")
    return host


def ip_of(text: str) -> IPAddress | None:
    """The address `text` spells, IPv4-mapped IPv6 addresses as the IPv4 address they reach; else None."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class HostList:
    """One of ORCH_ALLOWED_HOSTS / ORCH_DENIED_HOSTS, parsed."""

    setting: str
    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()  # from `*.example.com`: "example.com"
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, setting: str, entries: tuple[str, ...] | list[str]) -> HostList:
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[Network] = []
        for raw in entries:
            entry = normal_host(raw)
            if not entry:
                continue
            if "/" in entry or ip_of(entry) is not None:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ValueError(f"{setting}: {raw!r} is not a valid IP address or CIDR range.") from None
            elif entry.startswith("*."):
                suffixes.append(entry[2:])
            elif "*" in entry or any(c in entry for c in " :@?#"):
                raise ValueError(f"{setting}: {raw!r} is not a host name, a *.wildcard or a CIDR range.")
            else:
                names.add(entry)
        return cls(setting, frozenset(names), tuple(suffixes), tuple(networks))

    def __bool__(self) -> bool:
        return bool(self.names or self.suffixes or self.networks)

    def has_name(self, host: str) -> bool:
        return host in self.names or any(host == s or host.endswith("." + s) for s in self.suffixes)

    def has_address(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


@dataclass(frozen=True)
class Target:
    """Where a request goes: `path` is None inside a CONNECT tunnel, where the proxy cannot see it."""

    scheme: str
    host: str
    port: int
    path: str | None = "/"

    @classmethod
    def of(cls, url: str) -> Target:
        """Raises ValueError for a URL that is not valid."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port or DEFAULT_PORTS.get(scheme, 0)
        return cls(scheme, normal_host(parts.hostname or ""), port, parts.path or "/")

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = self.port == DEFAULT_PORTS.get(self.scheme)
        return f"{self.scheme}://{host}" if default else f"{self.scheme}://{host}:{self.port}"

    @property
    def demo(self) -> bool:
        """One of the app's pages runbooks may open: its demo, and the icon Chromium asks for by itself."""
        if self.path is None:
            return False
        path = unquote(self.path)
        if ".." in path.split("/"):
            return False
        return path in (DEMO_PATH, FAVICON) or path.startswith(DEMO_PATH + "/")


@dataclass(frozen=True)
class Verdict:
    """The addresses a request may connect to, or why it is refused, or why it cannot be reached."""

    addresses: tuple[IPAddress, ...] = ()
    refusal: str | None = None
    failure: str | None = None


@dataclass(frozen=True)
class UrlPolicy:
    allowed: HostList = field(default_factory=lambda: HostList("ORCH_ALLOWED_HOSTS"))
    denied: HostList = field(default_factory=lambda: HostList("ORCH_DENIED_HOSTS"))
    #: The app's own web origin by name (from ORCH_PUBLIC_URL), e.g. Target("https", "orch.example", 443).
    own_origin: Target | None = None
    #: Where the app's web server listens (ORCH_HOST:ORCH_PORT); an unspecified host (0.0.0.0) is any local one.
    own_address: tuple[IPAddress, int] | None = None

    @classmethod
    def of(cls, settings: Settings) -> UrlPolicy:
        return cls.build(
            settings.allowed_hosts, settings.denied_hosts, settings.public_url, settings.host, settings.port
        )

    @classmethod
    def build(
        cls,
        allowed: tuple[str, ...] = (),
        denied: tuple[str, ...] = (),
        public_url: str | None = None,
        host: str | None = None,
        port: int = 0,
    ) -> UrlPolicy:
        return cls(
            allowed=HostList.parse("ORCH_ALLOWED_HOSTS", allowed),
            denied=HostList.parse("ORCH_DENIED_HOSTS", denied),
            own_origin=Target.of(public_url) if public_url else None,
            own_address=_bind_address(host, port) if host else None,
        )

    @property
    def own_https_origin(self) -> str | None:
        """The app's own origin when it is https: a tunnel hides the path there, so the browser checks it."""
        own = self.own_origin
        return own.origin if own is not None and own.scheme == "https" else None

    def refusal(self, url: str) -> str | None:
        """Why `url` may not be opened, judged without resolving its host (which `check` does too)."""
        try:
            target = Target.of(url)
        except ValueError:
            return "it is not a valid URL"
        if target.scheme not in SCHEMES:
            return "only http and https pages may be opened"
        if why := self._by_name(target):
            return why
        address = ip_of(target.host)
        return self._by_address(target, address) if address is not None else None

    async def check_url(self, url: str) -> Verdict:
        """`check` for a URL, after the checks of its scheme."""
        if why := self.refusal(url):
            return Verdict(refusal=why)
        return await self.check(Target.of(url))

    async def check(self, target: Target) -> Verdict:
        """The host's name, then every address it resolves to, against the lists and the built-in refusals."""
        if why := self._by_name(target):
            return Verdict(refusal=why)
        literal = ip_of(target.host)
        if literal is not None:
            addresses: list[IPAddress] = [literal]
        else:
            try:
                addresses = await resolve(target.host, target.port)
            except OSError:
                return Verdict(failure=f"the host name {target.host} does not resolve")
        for address in addresses:
            if why := self._by_address(target, address):
                return Verdict(refusal=why)
        return Verdict(addresses=tuple(addresses))

    def _by_name(self, target: Target) -> str | None:
        host = target.host
        if not host:
            return "it names no host"
        if self.denied.has_name(host):
            return f"the host {host} is on ORCH_DENIED_HOSTS"
        allowed_name = self.allowed.has_name(host)
        if self.allowed and not allowed_name and not self.allowed.networks:
            return f"the host {host} is not on ORCH_ALLOWED_HOSTS"
        if allowed_name:
            return None
        if host in METADATA_NAMES:
            return f"{host} is a cloud metadata service{_ALLOWABLE}"
        own = self.own_origin
        if own is not None and (host, target.port) == (own.host, own.port) and not self._own_page(target):
            return _OWN
        return None

    def _by_address(self, target: Target, address: IPAddress) -> str | None:
        if self.denied.has_address(address):
            return f"{_subject(target, address)} on ORCH_DENIED_HOSTS"
        allowed = self.allowed.has_address(address)
        if self.allowed and not allowed and not self.allowed.has_name(target.host):
            return f"the host {target.host} is not on ORCH_ALLOWED_HOSTS"
        if allowed:
            return None
        if any(address in network for network in METADATA_NETWORKS):
            return f"{_subject(target, address)} link-local or a cloud metadata address{_ALLOWABLE}"
        if self._is_own_address(address, target.port) and not self._own_page(target):
            return _OWN
        return None

    def _own_page(self, target: Target) -> bool:
        """The app's demo pages; in a tunnel (no path), only its https origin, whose paths the browser checks."""
        if target.path is not None:
            return target.demo
        own = self.own_origin
        return own is not None and own.scheme == "https" and (target.host, target.port) == (own.host, own.port)

    def _is_own_address(self, address: IPAddress, port: int) -> bool:
        if self.own_address is None or port != self.own_address[1]:
            return False
        bound = self.own_address[0]
        if address.is_unspecified:  # connecting to 0.0.0.0 reaches this machine
            return True
        if bound.is_unspecified:
            return address.is_loopback or _is_local(address)
        return address == bound


_ALLOWABLE = " (ORCH_ALLOWED_HOSTS may allow it)"
_OWN = "it is the orchestrator's own web app, whose pages runbooks may not open (except its demo under /demo/)"


def _subject(target: Target, address: IPAddress) -> str:
    """'the address A is' for a URL that names the address, 'H resolves to A, which is' for a host name."""
    if ip_of(target.host) is not None:
        return f"the address {address} is"
    return f"{target.host} resolves to {address}, which is"


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (raises OSError when it resolves to none)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(RESOLVE_TIMEOUT_S):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for info in infos:
        address = ip_of(str(info[4][0]))
        if address is not None and address not in found:
            found.append(address)
    if not found:
        raise OSError(f"{host} has no address")
    return found


def _bind_address(host: str, port: int) -> tuple[IPAddress, int] | None:
    """ORCH_HOST:ORCH_PORT as an address (a name such as `localhost` resolved once, at start)."""
    if not port:
        return None
    address = ip_of(normal_host(host))
    if address is None:
        try:
            infos = socket.getaddrinfo(normal_host(host), port, type=socket.SOCK_STREAM)
        except OSError:
            return None
        address = ip_of(str(infos[0][4][0]))
    return (address, port) if address is not None else None


def _is_local(address: IPAddress) -> bool:
    """Whether `address` is one of this machine's own: the kernel lets a socket bind only to those."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True
