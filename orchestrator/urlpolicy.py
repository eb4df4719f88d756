"""Which pages a runbook may open: http and https only, and the deployment's host allow and deny lists
(`ORCH_ALLOWED_HOSTS`, `ORCH_DENIED_HOSTS`; `example.com` is that host, `*.example.com` it and its
subdomains)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

SCHEMES = ("http", "https")


@dataclass(frozen=True)
class UrlPolicy:
    allowed: tuple[str, ...] = ()
    denied: tuple[str, ...] = ()

    @property
    def restricts_hosts(self) -> bool:
        return bool(self.allowed or self.denied)

    def refusal(self, url: str) -> str | None:
        """Why `url` may not be opened, or None when it may."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
        except ValueError:
            return "it is not a valid URL"
        if parts.scheme.lower() not in SCHEMES:
            return "only http and https pages may be opened"
        if not host:
            return "it names no host"
        if any(_matches(host, pattern) for pattern in self.denied):
            return f"the host {host} is on ORCH_DENIED_HOSTS"
        if self.allowed and not any(_matches(host, pattern) for pattern in self.allowed):
            return f"the host {host} is not on ORCH_ALLOWED_HOSTS"
        return None


def _matches(host: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        base = pattern[2:]
        return host == base or host.endswith("." + base)
    return host == pattern
