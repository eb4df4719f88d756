"""The `orchestrator` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from orchestrator.config import Settings


def _settings() -> Settings:
    return Settings.from_env()


def cmd_validate(args: argparse.Namespace) -> int:
    from orchestrator.runbooks.loader import RunbookInvalid, load_file

    bad = 0
    for name in args.files:
        try:
            runbook = load_file(Path(name))
        except RunbookInvalid as exc:
            bad += 1
            for problem in exc.problems:
                print(problem)
            continue
        print(f"{name}: ok ({runbook.name}, {len(runbook.all_steps())} steps)")
    return 1 if bad else 0


def cmd_db(args: argparse.Namespace) -> int:
    from orchestrator.db.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    print(f"database is up to date: {_safe_url(settings.database_url)}")
    return 0


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def cmd_web(args: argparse.Namespace) -> int:
    import uvicorn

    settings = _settings()
    uvicorn.run(
        "web.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level="info",
        proxy_headers=True,
        timeout_graceful_shutdown=3,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    importlib.import_module("worker.main").run(_settings())
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    from orchestrator import scheduler

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(scheduler.run(_settings()))
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from orchestrator.dev import run_dev

    return run_dev(_settings())


def cmd_run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args.name, dict(_pair(p) for p in args.input), args.follow))


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SystemExit(f"--input needs KEY=VALUE, not {text!r}")
    return key, value


async def _run(name: str, inputs: dict[str, Any], follow: bool) -> int:
    from orchestrator import jobs
    from orchestrator.errors import InvalidInput, OrchestratorError
    from orchestrator.services import Services

    svc = await Services.open(_settings())
    try:
        try:
            job, _ = await jobs.create(svc, name, jobs.JobRequest(inputs=inputs, source="cli", actor="cli"))
        except InvalidInput as exc:
            for field, message in exc.fields.items():
                print(f"input {field}: {message}", file=sys.stderr)
            return 2
        except OrchestratorError as exc:
            print(exc.message, file=sys.stderr)
            return 2
        print(f"job {job['id']} {job['status']}  {svc.settings.public_url}/jobs/{job['id']}")
        if not follow:
            return 0
        return await _follow(svc, job["id"])
    finally:
        await svc.close()


async def _follow(svc: Any, job_id: str) -> int:
    from orchestrator import events
    from orchestrator.db.engine import reading
    from orchestrator.views import job_view

    hub = events.Hub(svc.redis)
    await hub.start()
    after = 0
    try:
        with hub.subscribe(job_id) as news:
            while True:
                async with reading(svc.engine) as conn:
                    rows = await events.read_after(conn, after, job_id=job_id)
                for row in rows:
                    after = row.id
                    _print_event(row)
                    if row.type == "report":
                        async with reading(svc.engine) as conn:
                            job = await job_view(conn, job_id)
                        if job["outputs"]:
                            print("outputs " + json.dumps(job["outputs"]))
                        return 0 if row.data["status"] == "completed" else 1
                await news.wait(5)
    finally:
        await hub.stop()


def _print_event(row: Any) -> None:
    data = row.data
    if row.type == "status":
        print(f"status  {data['status']}")
    elif row.type == "step":
        step = data["step"]
        if step["status"] != "running":
            extra = f"  {step['error']}" if step["error"] else ""
            print(f"step    {step['id']:<24} {step['status']:<9} {step['duration_s'] or 0:6.2f} s{extra}")
    elif row.type == "log":
        print(f"log     {data['level']}: {data['message']}")
    elif row.type == "report":
        print(f"result  {data['status']}: {data['summary']}")


def cmd_act(args: argparse.Namespace) -> int:
    return asyncio.run(_act(args.command, args.job_id, args.comment))


async def _act(action_name: str, job_id: str, comment: str | None) -> int:
    from orchestrator import jobs
    from orchestrator.errors import OrchestratorError
    from orchestrator.services import Services
    from orchestrator.states import Action

    svc = await Services.open(_settings())
    try:
        job = await jobs.act(svc, job_id, Action(action_name), actor=f"cli:{_user()}", comment=comment)
    except OrchestratorError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    finally:
        await svc.close()
    print(f"job {job['id']} {job['status']}")
    return 0


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def cmd_not_yet(args: argparse.Namespace) -> int:
    print("users and tokens come with authentication, which this version does not have yet.", file=sys.stderr)
    return 2


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="orchestrator", description="Run and watch browser-automation runbooks.")
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("dev", help="everything in one command: Redis, database, web, worker, scheduler").set_defaults(
        func=cmd_dev
    )
    sub.add_parser("web", help="the web server").set_defaults(func=cmd_web)
    sub.add_parser("worker", help="a worker process").set_defaults(func=cmd_worker)
    sub.add_parser("scheduler", help="the scheduler process").set_defaults(func=cmd_scheduler)
    validate = sub.add_parser("validate", help="check runbook files")
    validate.add_argument("files", nargs="+")
    validate.set_defaults(func=cmd_validate)
    run = sub.add_parser("run", help="run a runbook")
    run.add_argument("name")
    run.add_argument("--input", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--follow", action="store_true", help="print the job's progress until it ends")
    run.set_defaults(func=cmd_run)
    db = sub.add_parser("db", help="database commands")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="create or migrate the database").set_defaults(func=cmd_db)
    for name in ("approve", "reject", "pause", "resume", "cancel"):
        act = sub.add_parser(name, help=f"{name} a job")
        act.add_argument("job_id")
        act.add_argument("--comment", default=None)
        act.set_defaults(func=cmd_act)
    for name in ("users", "tokens"):
        extra = sub.add_parser(name, help=f"manage {name}")
        extra.add_argument("rest", nargs=argparse.REMAINDER)
        extra.set_defaults(func=cmd_not_yet)
    return top


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
