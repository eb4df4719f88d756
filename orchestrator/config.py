"""Settings from ORCH_* environment variables: the only place configuration is read."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.urlpolicy import HostList


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


#: Each cap: its variable, its default and its least value.
CAPS: dict[str, tuple[str, int, int]] = {
    "max_records": ("ORCH_MAX_RECORDS", 10_000, 1),
    "max_records_bytes": ("ORCH_MAX_RECORDS_BYTES", 10 * 1024 * 1024, 1024),
    "job_records": ("ORCH_JOB_RECORDS", 100, 1),
    "max_artifact_bytes": ("ORCH_MAX_ARTIFACT_BYTES", 1024 * 1024 * 1024, 1024),
    "video_max_frames": ("ORCH_VIDEO_MAX_FRAMES", 20_000, 1),
    "video_max_bytes": ("ORCH_VIDEO_MAX_BYTES", 512 * 1024 * 1024, 1024),
    "video_max_seconds": ("ORCH_VIDEO_MAX_SECONDS", 3600, 1),
    "sse_streams_per_user": ("ORCH_SSE_STREAMS_PER_USER", 50, 0),
    "sse_replay_max": ("ORCH_SSE_REPLAY_MAX", 1000, 1),
}


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    redis_url: str | None
    runbooks_dir: Path
    browser_path: str | None
    host: str
    port: int
    worker_concurrency: int
    public_url: str
    secret_key: str = field(repr=False)
    #: Sign-in attempts per client address per minute, and jobs created per principal per minute.
    login_rate: int = 10
    job_rate: int = 300
    #: Sign-in attempts per user name per minute, whatever address they come from.
    login_user_rate: int = 10
    #: Threads that check passwords (scrypt, off the event loop), and sign-ins that may wait for one;
    #: beyond that a sign-in is refused with 503 rather than queued.
    password_threads: int = 2
    password_backlog: int = 16
    #: Addresses (and CIDR ranges) of reverse proxies whose X-Forwarded-For names the client; empty: none.
    trusted_proxies: str = "127.0.0.1"
    #: Hosts runbooks may open (empty: any but the built-in refusals of orchestrator/urlpolicy.py) and may
    #: never open: host names, `*.example.com` wildcards, IP addresses and CIDR ranges.
    allowed_hosts: tuple[str, ...] = ()
    denied_hosts: tuple[str, ...] = ()
    #: Caps that keep one job, stream or file from growing without bound (issue 16): records in a
    #: `records` input and its size as JSON; records the job object carries (the rest are paged);
    #: the largest artifact file; a session video's frames, bytes of frames and seconds; event
    #: streams one user may hold open per web process (0: no cap); and how many missed events a
    #: reconnecting stream is replayed before it gets a fresh start instead.
    max_records: int = CAPS["max_records"][1]
    max_records_bytes: int = CAPS["max_records_bytes"][1]
    job_records: int = CAPS["job_records"][1]
    max_artifact_bytes: int = CAPS["max_artifact_bytes"][1]
    video_max_frames: int = CAPS["video_max_frames"][1]
    video_max_bytes: int = CAPS["video_max_bytes"][1]
    video_max_seconds: int = CAPS["video_max_seconds"][1]
    sse_streams_per_user: int = CAPS["sse_streams_per_user"][1]
    sse_replay_max: int = CAPS["sse_replay_max"][1]

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(_env("ORCH_DATA_DIR", "var")).resolve()
        host = _env("ORCH_HOST", "127.0.0.1")
        port = int(_env("ORCH_PORT", "8000"))
        return cls(
            data_dir=data_dir,
            database_url=_env("ORCH_DATABASE_URL", f"sqlite+aiosqlite:///{data_dir / 'orchestrator.db'}"),
            redis_url=os.environ.get("ORCH_REDIS_URL") or None,
            runbooks_dir=Path(_env("ORCH_RUNBOOKS_DIR", "runbooks")).resolve(),
            browser_path=os.environ.get("ORCH_BROWSER_PATH") or None,
            host=host,
            port=port,
            worker_concurrency=int(_env("ORCH_WORKER_CONCURRENCY", "4")),
            public_url=_env("ORCH_PUBLIC_URL", f"http://{host}:{port}").rstrip("/"),
            secret_key=os.environ.get("ORCH_SECRET_KEY") or _stored_secret(data_dir),
            login_rate=int(_env("ORCH_LOGIN_RATE", "10")),
            job_rate=int(_env("ORCH_JOB_RATE", "300")),
            login_user_rate=int(_env("ORCH_LOGIN_USER_RATE", "10")),
            password_threads=max(1, int(_env("ORCH_PASSWORD_THREADS", "2"))),
            password_backlog=max(0, int(_env("ORCH_PASSWORD_BACKLOG", "16"))),
            trusted_proxies=os.environ.get("ORCH_TRUSTED_PROXIES", "127.0.0.1").strip(),
            allowed_hosts=_hosts("ORCH_ALLOWED_HOSTS"),
            denied_hosts=_hosts("ORCH_DENIED_HOSTS"),
            **_caps(),
        )

    def environment(self) -> dict[str, str]:
        """These settings as ORCH_* variables, for a child process (a worker, a scheduler) to read."""
        return {
            "ORCH_DATA_DIR": str(self.data_dir),
            "ORCH_DATABASE_URL": self.database_url,
            "ORCH_REDIS_URL": self.redis_url or "",
            "ORCH_RUNBOOKS_DIR": str(self.runbooks_dir),
            "ORCH_BROWSER_PATH": self.browser_path or "",
            "ORCH_HOST": self.host,
            "ORCH_PORT": str(self.port),
            "ORCH_WORKER_CONCURRENCY": str(self.worker_concurrency),
            "ORCH_PUBLIC_URL": self.public_url,
            "ORCH_SECRET_KEY": self.secret_key,
            "ORCH_LOGIN_RATE": str(self.login_rate),
            "ORCH_JOB_RATE": str(self.job_rate),
            "ORCH_LOGIN_USER_RATE": str(self.login_user_rate),
            "ORCH_PASSWORD_THREADS": str(self.password_threads),
            "ORCH_PASSWORD_BACKLOG": str(self.password_backlog),
            "ORCH_TRUSTED_PROXIES": self.trusted_proxies,
            "ORCH_ALLOWED_HOSTS": ",".join(self.allowed_hosts),
            "ORCH_DENIED_HOSTS": ",".join(self.denied_hosts),
            **{variable: str(getattr(self, name)) for name, (variable, _, _) in CAPS.items()},
        }

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def redis(self) -> str:
        if not self.redis_url:
            raise RuntimeError("ORCH_REDIS_URL is not set; start the app with `orchestrator dev` or set it.")
        return self.redis_url


def _caps() -> dict[str, int]:
    """The caps from their variables; a value that is not a whole number at least the least allowed is an
    error naming the variable."""
    found = {}
    for name, (variable, default, least) in CAPS.items():
        raw = _env(variable, str(default)).replace("_", "")
        if not raw.isdigit() or int(raw) < least:
            raise ValueError(f"{variable} must be a whole number of at least {least}; it is {raw!r}.")
        found[name] = int(raw)
    return found


def _hosts(name: str) -> tuple[str, ...]:
    """A comma-separated host list; a bad entry stops the start with an error naming the variable."""
    hosts = tuple(h.strip().lower() for h in os.environ.get(name, "").split(",") if h.strip())
    HostList.parse(name, hosts)
    return hosts


def _stored_secret(data_dir: Path) -> str:
    """The generated key in ORCH_DATA_DIR, created on first use and kept for later runs."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    tmp = path.with_suffix(f".{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    try:
        os.link(tmp, path)  # atomic: the first process to start wins, the others read its key
    except FileExistsError:
        key = path.read_text().strip()
    finally:
        tmp.unlink()
    return key
