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

from orchestrator.auth import ROLES, Principal
from orchestrator.config import Settings
from orchestrator.states import JobStatus, StepStatus


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as exc:  # a bad setting: its message names the variable, in the process's log format
        logging.getLogger("orchestrator").critical("%s", exc)
        raise SystemExit(1) from None


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
        log_config=None,  # uvicorn's lines, the access log too, go through our redacting handler (logs.configure)
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
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

    svc = await Services.open(_settings(), "orchestrator-cli")
    try:
        try:
            job, _ = await jobs.create(
                svc, name, jobs.JobRequest(inputs=inputs, source="cli", actor=f"cli:{_user()}", owner=f"cli:{_user()}")
            )
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
                        return 0 if row.data["status"] == JobStatus.COMPLETED.value else 1
                await news.wait(5)
    finally:
        await hub.stop()


def _print_event(row: Any) -> None:
    data = row.data
    if row.type == "status":
        print(f"status  {data['status']}")
    elif row.type == "step":
        step = data["step"]
        if step["status"] != StepStatus.RUNNING.value:
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


def cmd_users(args: argparse.Namespace) -> int:
    return _with_engine(_users, args)


def cmd_tokens(args: argparse.Namespace) -> int:
    return _with_engine(_tokens, args)


def _with_engine(command: Any, args: argparse.Namespace) -> int:
    """Run an account command on a migrated database; a bad name, role or password exits 1 naming it."""
    from orchestrator.errors import InvalidInput

    async def run() -> int:
        engine = await _engine()
        try:
            return int(await command(engine, args))
        except InvalidInput as exc:
            print("; ".join(f"{k}: {v}" for k, v in exc.fields.items()), file=sys.stderr)
            return 1
        finally:
            await engine.dispose()

    return asyncio.run(run())


async def _users(engine: Any, args: argparse.Namespace) -> int:
    from orchestrator import auth

    if args.users_command == "list":
        for user in await auth.list_users(engine):
            print(f"{user['name']}\t{user['role']}\t{'disabled' if user['disabled_at'] else 'active'}")
        return 0
    if args.users_command in ("disable", "enable"):
        await auth.set_disabled(engine, args.name, args.users_command == "disable")
        done = "disabled; their sessions are signed out and their tokens and webhooks stop working"
        print(f"user {args.name} {done if args.users_command == 'disable' else 'enabled'}")
        return 0
    password = _read_password(args)
    if args.users_command == "add":
        await auth.add_user(engine, args.name, args.role, password)
        print(f"user {args.name} added with role {auth.check_role(args.role)}")
    else:
        await auth.set_password(engine, args.name, password)
        print(f"password of {args.name} changed; their sessions are signed out")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise SystemExit("the passwords differ")
    return first


async def _tokens(engine: Any, args: argparse.Namespace) -> int:
    from orchestrator import auth

    if args.tokens_command == "create":
        owner = args.owner or (args.name if await auth.user_exists(engine, args.name) else None)
        token = await auth.create_token(engine, args.name, args.role, _cli_principal().actor, owner=owner)
        acting = f", acting for {owner}" if owner else ""
        print(f"token {args.name} ({args.role}{acting}) created; it is shown only now:", file=sys.stderr)
        print(token)
    elif args.tokens_command == "list":
        for row in await auth.list_tokens(engine):
            state = "revoked" if row["revoked_at"] else "active"
            print(f"{row['id']}\t{row['name']}\t{row['role']}\t{state}\t{row['owner'] or '-'}")
    elif not await auth.revoke_token(engine, args.token_id):
        print(f"no active token has the id {args.token_id}", file=sys.stderr)
        return 1
    return 0


def cmd_hooks(args: argparse.Namespace) -> int:
    return _with_engine(_hooks, args)


async def _hooks(engine: Any, args: argparse.Namespace) -> int:
    from orchestrator import hooks

    if args.hooks_command == "create":
        maker = _cli_principal()
        hook_id, token = await hooks.create(engine, args.runbook, maker.actor, owner=maker.human)
        print(
            f"hook {hook_id} of {args.runbook} created; POST JSON inputs to this path (shown only now):",
            file=sys.stderr,
        )
        print(hooks.path_of(token))
    elif args.hooks_command == "list":
        for row in await hooks.listed(engine, args.runbook):
            print(f"{row['id']}\t{row['runbook']}\t{'revoked' if row['revoked_at'] else 'active'}")
    elif not await hooks.revoke(engine, args.runbook, args.hook_id):
        print(f"{args.runbook} has no active hook {args.hook_id}", file=sys.stderr)
        return 1
    return 0


def cmd_channels(args: argparse.Namespace) -> int:
    return _with_engine(_channels, args)


async def _channels(engine: Any, args: argparse.Namespace) -> int:
    from orchestrator import channels
    from orchestrator.errors import InvalidInput, OrchestratorError

    try:
        if args.channels_command == "add":
            kinds = {"email": args.email, "slack": args.slack, "webhook": args.webhook}
            given = [kind for kind, value in kinds.items() if value]
            if len(given) != 1:
                raise InvalidInput({"kind": "give exactly one of --email, --slack or --webhook"})
            secret = sys.stdin.readline().rstrip("\r\n") if args.secret_stdin else args.secret
            sealer = channels.Sealer(_settings().secret_key)
            made = await channels.add(
                engine, sealer, args.name, given[0], kinds[given[0]], secret or None, _cli_principal().actor
            )
            print(f"channel {made['name']} ({made['kind']}: {made['target']}) added")
        elif args.channels_command == "list":
            for row in await channels.listing(engine):
                print(f"{row['name']}\t{row['kind']}\t{row['target']}\t{row['created_by'] or '-'}")
        else:
            await channels.remove(engine, args.name)
            print(f"channel {args.name} removed")
    except InvalidInput:
        raise
    except OrchestratorError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    return 0


def _cli_principal() -> Principal:
    """Whoever runs this command: a local account, trusted as an admin (it can read the database anyway)."""
    return Principal(_user(), "admin", "cli")


async def _engine() -> Any:
    from orchestrator.db.engine import create_engine
    from orchestrator.db.migrate import upgrade_async

    settings = _settings()
    await upgrade_async(settings.database_url)
    return create_engine(settings.database_url)


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
    roles = f"a role ({', '.join(ROLES)}), or several as a comma list with groups, e.g. approver,finance"
    users = sub.add_parser("users", help="people who sign in to the web pages").add_subparsers(
        dest="users_command", required=True
    )
    for name, text in (("add", "add a user"), ("passwd", "set a user's password")):
        command = users.add_parser(name, help=text)
        command.add_argument("name")
        if name == "add":
            command.add_argument("--role", required=True, help=roles)
        command.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
        command.set_defaults(func=cmd_users)
    users.add_parser("list", help="list users: name, role, active or disabled").set_defaults(func=cmd_users)
    for name, text in (
        ("disable", "stop a user: no sign-in, their sessions end, their tokens and webhooks stop working"),
        ("enable", "let a disabled user back in (their tokens and webhooks work again)"),
    ):
        command = users.add_parser(name, help=text)
        command.add_argument("name")
        command.set_defaults(func=cmd_users)
    tokens = sub.add_parser("tokens", help="API tokens for scripts and other systems").add_subparsers(
        dest="tokens_command", required=True
    )
    create = tokens.add_parser("create", help="create a token; its last line of output is the token")
    create.add_argument("name")
    create.add_argument("--role", required=True, help=roles)
    create.add_argument(
        "--owner", default=None, help="the user the token acts for (default: the user called NAME, if there is one)"
    )
    create.set_defaults(func=cmd_tokens)
    tokens.add_parser("list", help="list tokens: id, name, role, state, owner (never the secret)").set_defaults(
        func=cmd_tokens
    )
    revoke = tokens.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id")
    revoke.set_defaults(func=cmd_tokens)
    hooks = sub.add_parser("hooks", help="webhooks that start jobs of a runbook").add_subparsers(
        dest="hooks_command", required=True
    )
    for name, text in (("create", "make a webhook; the last line printed is its path"), ("list", "list webhooks")):
        command = hooks.add_parser(name, help=text)
        command.add_argument("runbook")
        command.set_defaults(func=cmd_hooks)
    revoke_hook = hooks.add_parser("revoke", help="revoke a webhook")
    revoke_hook.add_argument("runbook")
    revoke_hook.add_argument("hook_id")
    revoke_hook.set_defaults(func=cmd_hooks)
    channel = sub.add_parser("channels", help="where notifications go (mail, Slack, webhooks)").add_subparsers(
        dest="channels_command", required=True
    )
    add = channel.add_parser("add", help="make a channel: one of --email, --slack or --webhook")
    add.add_argument("name")
    add.add_argument("--email", metavar="ADDR[,ADDR]", help="mail addresses, comma-separated")
    add.add_argument("--slack", metavar="WEBHOOK_URL", help="a Slack incoming-webhook URL")
    add.add_argument("--webhook", metavar="URL", help="any URL: JSON posts signed with --secret")
    add.add_argument("--secret", help="the webhook's signing secret (16 to 200 characters)")
    add.add_argument("--secret-stdin", action="store_true", help="read the signing secret from standard input")
    add.set_defaults(func=cmd_channels)
    channel.add_parser("list", help="list channels (never their URLs' paths or secrets)").set_defaults(
        func=cmd_channels
    )
    remove = channel.add_parser("remove", help="remove a channel")
    remove.add_argument("name")
    remove.set_defaults(func=cmd_channels)
    return top


def main(argv: list[str] | None = None) -> int:
    from orchestrator import logs
    from orchestrator.config import log_format

    try:
        form = log_format()
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    logs.configure(logging.INFO, form)
    args = parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
