"""Taking the wheel (issue 20): a person with job:control holds a waiting job's live browser, sends it
clicks, typing, keys and scrolls, and gives it back. State lives in Redis (any web process and any worker
sees it, and it outlives a worker lost meanwhile); the audit records who held it, when, for how long,
how many inputs, and the page's URL before and after, never what was typed.

Control is given back by its holder, on Resume (and every other move that ends the wait), when the holder
signs out, and after IDLE_S without input (noticed by the waiting run, or by whoever looks next)."""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import utcnow
from orchestrator.errors import Conflict, InvalidTransition, JobNotFound
from orchestrator.keys import CONTROL_CHANNEL, control_key, controls_of_key, input_key, page_url_key
from orchestrator.states import JobStatus

#: Control nobody used for this long is given back.
IDLE_S = 120.0
#: The statuses whose live browser a person may take: the run waits on its page.
WAITING = (JobStatus.PAUSED.value, JobStatus.WAITING_FOR_APPROVAL.value)
#: Inputs waiting for the run at most (a flood is refused, not queued without end).
MAX_PENDING = 200


async def _status(engine: AsyncEngine, job_id: str) -> str:
    async with reading(engine) as conn:
        status = (await conn.execute(select(t.jobs.c.status).where(t.jobs.c.id == job_id))).scalar()
    if status is None:
        raise JobNotFound(f"No job has the id {job_id}.")
    return str(status)


def _waiting(job_id: str, status: str, what: str) -> None:
    if status not in WAITING:
        raise InvalidTransition(
            f"Job {job_id} is {status}: {what} only while it is paused or waiting for approval.",
            status=status,
            allowed_actions=[],
        )


async def holder(redis: Redis, job_id: str) -> dict[str, Any] | None:
    raw = await redis.get(control_key(job_id))
    return json.loads(raw) if raw else None


async def take(engine: AsyncEngine, redis: Redis, job_id: str, who: str) -> dict[str, Any]:
    """`who` takes the wheel (200 again when they hold it already); 409 naming the holder otherwise."""
    _waiting(job_id, await _status(engine, job_id), "its browser can be taken")
    await expire_idle(engine, redis, job_id)
    now = time.time()
    record = {"holder": who, "since": now, "last_input_at": now, "inputs": 0}
    url = await redis.get(page_url_key(job_id))
    record["url_before"] = url.decode() if isinstance(url, bytes) else url
    if not await redis.set(control_key(job_id), json.dumps(record), nx=True):
        held = await holder(redis, job_id) or {}
        if held.get("holder") != who:
            raise Conflict(f"{held.get('holder')} holds control of job {job_id}; ask them to give it back.")
        return _shown(job_id, held)
    await redis.sadd(controls_of_key(who), job_id)  # type: ignore[misc]
    await _audit(engine, job_id, who, "take_control", None)
    return _shown(job_id, record)


def _shown(job_id: str, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "holder": record["holder"],
        "since": record["since"],
        "inputs": record["inputs"],
        "idle_expires_in_s": max(0.0, IDLE_S - (time.time() - record["last_input_at"])),
    }


async def give_back(engine: AsyncEngine, redis: Redis, job_id: str, who: str | None, why: str) -> bool:
    """End the control of `job_id` (held by `who`, or by anyone when `who` is None), audited with how long
    it was held, how many inputs, and the page's URL before and after; False when nobody held it."""
    held = await holder(redis, job_id)
    if held is None or (who is not None and held["holder"] != who):
        return False
    if not await redis.delete(control_key(job_id)):
        return False  # someone else gave it back meanwhile: they audit it
    await redis.srem(controls_of_key(held["holder"]), job_id)  # type: ignore[misc]
    await redis.delete(input_key(job_id))
    after = await redis.get(page_url_key(job_id))
    seconds = time.time() - held["since"]
    comment = (
        f"{why}; held {seconds:.0f} s, {held['inputs']} input(s); page before: {held.get('url_before') or '?'},"
        f" after: {after.decode() if isinstance(after, bytes) else after or '?'}"
    )
    await _audit(engine, job_id, held["holder"], "give_back", comment)
    return True


async def expire_idle(engine: AsyncEngine, redis: Redis, job_id: str) -> None:
    held = await holder(redis, job_id)
    if held is not None and time.time() - held["last_input_at"] > IDLE_S:
        await give_back(engine, redis, job_id, held["holder"], f"no input for {IDLE_S:g} s")


async def send(engine: AsyncEngine, redis: Redis, job_id: str, who: str, event: dict[str, Any]) -> int:
    """Queue one input for the run that holds the job's browser, in order; 409 unless `who` holds control
    of a waiting job. Returns the inputs sent in this control so far."""
    _waiting(job_id, await _status(engine, job_id), "input reaches its browser")
    await expire_idle(engine, redis, job_id)
    held = await holder(redis, job_id)
    if held is None:
        raise Conflict(f"Nobody holds control of job {job_id}: take control first.")
    if held["holder"] != who:
        raise Conflict(f"{held['holder']} holds control of job {job_id}, not you.")
    held.update(inputs=held["inputs"] + 1, last_input_at=time.time())
    async with redis.pipeline(transaction=True) as pipe:
        pipe.rpush(input_key(job_id), json.dumps(event))
        pipe.expire(input_key(job_id), int(IDLE_S))
        pipe.set(control_key(job_id), json.dumps(held), xx=True)
        pipe.publish(CONTROL_CHANNEL, json.dumps({"job_id": job_id, "action": "input"}))
        pending, *_ = await pipe.execute()
    if pending > MAX_PENDING:
        await redis.delete(input_key(job_id))
        raise Conflict(f"Job {job_id}'s browser is {MAX_PENDING} inputs behind: they were dropped; send fewer.")
    return int(held["inputs"])


async def take_inputs(redis: Redis, job_id: str) -> list[dict[str, Any]]:
    """The inputs waiting for the run, in order, each taken once."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.lrange(input_key(job_id), 0, -1)
        pipe.delete(input_key(job_id))
        raw, _ = await pipe.execute()
    return [json.loads(item) for item in raw]


async def give_back_all(engine: AsyncEngine, redis: Redis, who: str, why: str) -> None:
    """Everything `who` holds (they signed out)."""
    held: set[Any] = await redis.smembers(controls_of_key(who))  # type: ignore[misc]
    for job_id in held:
        await give_back(engine, redis, job_id.decode() if isinstance(job_id, bytes) else job_id, who, why)


async def _audit(engine: AsyncEngine, job_id: str, actor: str, action: str, comment: str | None) -> None:
    async with writing(engine) as conn:
        await conn.execute(
            insert(t.audit).values(
                job_id=job_id, actor=actor, action=action, comment=comment, outcome="ok", at=utcnow()
            )
        )
