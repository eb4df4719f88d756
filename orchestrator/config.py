"""Settings from ORCH_* environment variables: the only place configuration is read."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


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
    #: Hosts runbooks may open (empty: any) and may never open; entries like `example.com` or `*.example.com`.
    allowed_hosts: tuple[str, ...] = ()
    denied_hosts: tuple[str, ...] = ()

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
            allowed_hosts=_hosts("ORCH_ALLOWED_HOSTS"),
            denied_hosts=_hosts("ORCH_DENIED_HOSTS"),
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
            "ORCH_ALLOWED_HOSTS": ",".join(self.allowed_hosts),
            "ORCH_DENIED_HOSTS": ",".join(self.denied_hosts),
        }

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def redis(self) -> str:
        if not self.redis_url:
            raise RuntimeError("ORCH_REDIS_URL is not set; start the app with `orchestrator dev` or set it.")
        return self.redis_url


def _hosts(name: str) -> tuple[str, ...]:
    return tuple(h.strip().lower() for h in os.environ.get(name, "").split(",") if h.strip())


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
