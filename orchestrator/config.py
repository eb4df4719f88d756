"""Settings from ORCH_* environment variables: the only place configuration is read."""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

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
    #: GET /metrics without a token (ORCH_METRICS_PUBLIC=1); else a token of the `metrics` role, or an admin.
    metrics_public: bool = False
    #: A worker that has not beat for this long shows as lost, and after this long it is no longer listed
    #: (orchestrator/workers.py; it beats every 2 s).
    worker_lost_s: float = 6.0
    worker_gone_s: float = 300.0
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
    #: The artifact store (ORCH_ARTIFACTS_URL): "" for the folder ORCH_DATA_DIR/artifacts, another folder, or
    #: s3://bucket/prefix on AWS or, with s3_endpoint (ORCH_S3_ENDPOINT), any S3-compatible store; its
    #: credentials are the usual AWS_* variables, kept here for child processes and out of repr and logs.
    artifacts_url: str = ""
    s3_endpoint: str = ""
    aws_environment: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    #: Log lines (ORCH_LOG_FORMAT): "text" for people, "json" for one JSON object a line (orchestrator/logs.py).
    log_format: str = "text"
    #: Where job traces go over OTLP/HTTP (ORCH_OTEL_ENDPOINT, such as http://collector:4318); "": no tracing.
    otel_endpoint: str = ""
    #: Notification mail (ORCH_SMTP_URL: smtp://user:pass@host:port, STARTTLS when the server offers it, or
    #: smtps://; "": mail is written to the log instead) from ORCH_MAIL_FROM.
    smtp_url: str = field(default="", repr=False)
    mail_from: str = "orchestrator@localhost"
    #: ORCH_NOTIFY_DEFAULT: rules every runbook has besides its own `notify`, ((events, channel), ...).
    notify_default: tuple[tuple[tuple[str, ...], str], ...] = ()
    #: The first retry of a failed notification after this many seconds, then twice as long each time (at most
    #: an hour apart), until NOTIFY_GIVE_UP_S after it was queued.
    notify_retry_s: float = 10.0

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(_env("ORCH_DATA_DIR", "var")).resolve()
        host = _env("ORCH_HOST", "127.0.0.1")
        port = int(_env("ORCH_PORT", "8000"))
        lost, gone = _worker_rhythm()
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
            metrics_public=_flag("ORCH_METRICS_PUBLIC"),
            worker_lost_s=lost,
            worker_gone_s=gone,
            artifacts_url=_artifacts_url(),
            s3_endpoint=_s3_endpoint(),
            aws_environment=tuple((k, os.environ[k]) for k in AWS_VARIABLES if os.environ.get(k)),
            log_format=log_format(),
            otel_endpoint=_otel_endpoint(),
            smtp_url=_smtp_url(),
            mail_from=_mail_from(),
            notify_default=_notify_default(),
            notify_retry_s=_seconds("ORCH_NOTIFY_RETRY_S", "10", 0.01),
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
            "ORCH_METRICS_PUBLIC": "1" if self.metrics_public else "0",
            "ORCH_WORKER_LOST_S": f"{self.worker_lost_s:g}",
            "ORCH_WORKER_GONE_S": f"{self.worker_gone_s:g}",
            **{variable: str(getattr(self, name)) for name, (variable, _, _) in CAPS.items()},
            "ORCH_ARTIFACTS_URL": self.artifacts_url,
            "ORCH_S3_ENDPOINT": self.s3_endpoint,
            **dict(self.aws_environment),
            "ORCH_LOG_FORMAT": self.log_format,
            "ORCH_OTEL_ENDPOINT": self.otel_endpoint,
            "ORCH_SMTP_URL": self.smtp_url,
            "ORCH_MAIL_FROM": self.mail_from,
            "ORCH_NOTIFY_DEFAULT": ";".join(f"{','.join(events)}:{channel}" for events, channel in self.notify_default),
            "ORCH_NOTIFY_RETRY_S": f"{self.notify_retry_s:g}",
        }

    @property
    def artifacts(self) -> Path | S3Location:
        """Where artifact files are kept: a folder, or a bucket and prefix."""
        return artifacts_location(self.artifacts_url) or self.data_dir / "artifacts"

    @property
    def artifacts_dir(self) -> Path:
        """The artifact folder (an error when the store is S3: there is none)."""
        where = self.artifacts
        if isinstance(where, S3Location):
            raise RuntimeError(f"ORCH_ARTIFACTS_URL is an S3 store ({where}), not a folder.")
        return where

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


#: The AWS variables an S3 artifact store reads its credentials and region from.
AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


def artifacts_location(url: str) -> Path | S3Location | None:
    """ORCH_ARTIFACTS_URL read: None when unset (the default folder), a folder (a path or file:///path),
    or an S3 bucket and key prefix; anything else is an error naming the variable."""
    if not url:
        return None
    if "://" not in url:
        return Path(url).resolve()
    parts = split_url(url)
    if parts is None:
        raise ValueError("ORCH_ARTIFACTS_URL must be a folder or s3://bucket/prefix; it is not a URL.")
    if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path:
        return Path(parts.path).resolve()
    if parts.scheme != "s3":
        raise ValueError(f"ORCH_ARTIFACTS_URL must be a folder or s3://bucket/prefix; {parts.scheme}:// is neither.")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("ORCH_ARTIFACTS_URL must be s3://bucket/prefix alone: credentials go in AWS_* variables.")
    if not parts.netloc:
        raise ValueError("ORCH_ARTIFACTS_URL must name a bucket: s3://bucket/prefix.")
    if not _BUCKET.fullmatch(parts.netloc) or ".." in parts.netloc:
        raise ValueError(f"ORCH_ARTIFACTS_URL names {parts.netloc!r}, which is not an S3 bucket name.")
    segments = [s for s in parts.path.split("/") if s]
    if any(s in (".", "..") or not s.isprintable() or "\\" in s for s in segments):
        raise ValueError("ORCH_ARTIFACTS_URL has a prefix with . or .. parts or unprintable characters.")
    return S3Location(parts.netloc, "/".join(segments))


def _artifacts_url() -> str:
    """ORCH_ARTIFACTS_URL, checked; a relative folder made absolute (a child process may start elsewhere)."""
    url = _env("ORCH_ARTIFACTS_URL", "")
    where = artifacts_location(url)
    return str(where) if isinstance(where, Path) else url


def split_url(url: str) -> SplitResult | None:
    """`url`'s parts; None when it is not a URL (a bad port included)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - read for its check: a bad port is an error
    except ValueError:
        return None
    return parts


def _http_address(variable: str, whose: str, example: str, alone: str) -> str:
    """A server's http:// or https:// address, alone (no credentials, query or fragment), from `variable`;
    "" when unset. The error names the variable, never the value: it may hold a password."""
    url = _env(variable, "").rstrip("/")
    if not url:
        return ""
    parts = split_url(url)
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{variable} must be {whose} http:// or https:// address, such as {example}.")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"{variable} must be {alone}.")
    return url


def _s3_endpoint() -> str:
    """ORCH_S3_ENDPOINT: an S3-compatible store's address (AWS's own when unset)."""
    return _http_address(
        "ORCH_S3_ENDPOINT",
        "the store's",
        "http://HOST:9000",
        "the store's address alone: put credentials in the AWS_* variables",
    )


def log_format() -> str:
    """ORCH_LOG_FORMAT: text (the default) or json. Read on its own too: a command sets up its logging
    before it reads the other settings (orchestrator/cli.py)."""
    value = _env("ORCH_LOG_FORMAT", "text").lower()
    if value not in ("text", "json"):
        raise ValueError(f"ORCH_LOG_FORMAT must be text or json; it is {value!r}.")
    return value


def _otel_endpoint() -> str:
    """ORCH_OTEL_ENDPOINT: an OTLP/HTTP collector's http:// or https:// address (spans go to its /v1/traces),
    without credentials (the exporter reads headers from OTEL_EXPORTER_OTLP_HEADERS)."""
    return _http_address(
        "ORCH_OTEL_ENDPOINT",
        "an OTLP/HTTP collector's",
        "http://127.0.0.1:4318",
        "the collector's address alone: put credentials in OTEL_EXPORTER_OTLP_HEADERS",
    )


def _smtp_url() -> str:
    """ORCH_SMTP_URL: smtp://[user:pass@]host[:port] (STARTTLS when offered) or smtps://...; "" when unset.
    The error names the variable, never the value: it holds a password."""
    url = _env("ORCH_SMTP_URL", "")
    if not url:
        return ""
    parts = split_url(url)
    if parts is None or parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError(
            "ORCH_SMTP_URL must be smtp://user:password@host:port or smtps://..., such as smtp://mail:587."
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("ORCH_SMTP_URL must be the server's address alone, with its user and password if any.")
    return url


#: A mail address (ASCII): what the API document's pattern says too, so both engines agree on it.
MAIL_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}")


def _mail_from() -> str:
    value = _env("ORCH_MAIL_FROM", "orchestrator@localhost")
    if not MAIL_ADDRESS.fullmatch(value):
        raise ValueError(f"ORCH_MAIL_FROM must be one mail address, such as robots@example.com; it is {value!r}.")
    return value


def _notify_default() -> tuple[tuple[tuple[str, ...], str], ...]:
    """ORCH_NOTIFY_DEFAULT: EVENT[,EVENT...]:CHANNEL rules separated by `;`, each checked by name."""
    from orchestrator.states import NOTIFY_EVENTS

    rules = []
    for rule in _env("ORCH_NOTIFY_DEFAULT", "").split(";"):
        if not rule.strip():
            continue
        events, _, channel = rule.strip().rpartition(":")
        names = tuple(e.strip() for e in events.split(",") if e.strip())
        if not names or not channel.strip():
            raise ValueError(
                f"ORCH_NOTIFY_DEFAULT must be EVENTS:CHANNEL, such as failed,sla_missed:ops; {rule!r} is not."
            )
        if unknown := [e for e in names if e not in NOTIFY_EVENTS]:
            raise ValueError(
                f"ORCH_NOTIFY_DEFAULT names no such event {unknown[0]!r}; events are {', '.join(NOTIFY_EVENTS)}."
            )
        rules.append((names, channel.strip()))
    return tuple(rules)


def _seconds(variable: str, default: str, least: float) -> float:
    raw = _env(variable, default)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not seconds >= least:  # NaN too
        raise ValueError(f"{variable} must be a number of seconds, at least {least:g}; it is {raw!r}.")
    return seconds


def _flag(name: str) -> bool:
    """A yes-or-no variable: 1 or 0 (true/false, yes/no); unset is no."""
    raw = _env(name, "0").lower()
    if raw not in ("1", "0", "true", "false", "yes", "no"):
        raise ValueError(f"{name} must be 1 or 0; it is {raw!r}.")
    return raw in ("1", "true", "yes")


def _worker_rhythm() -> tuple[float, float]:
    """ORCH_WORKER_LOST_S (more than the 2 s between a worker's beats) and ORCH_WORKER_GONE_S (longer)."""
    lost, gone = _seconds("ORCH_WORKER_LOST_S", "6", 3.0), _seconds("ORCH_WORKER_GONE_S", "300", 4.0)
    if gone <= lost:
        raise ValueError("ORCH_WORKER_GONE_S must be longer than ORCH_WORKER_LOST_S.")
    return lost, gone


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
