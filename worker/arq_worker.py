"""The arq Worker the orchestrator runs: woken by a Redis message on enqueue and when a slot frees,
claiming queued jobs in one round trip for all its free slots, ending them in one per turn of the
loop, relaying control signals to the runs, renewing their leases, and giving a slot back while a
job waits for a person. The overridden arq methods keep arq's names and rules
(tests/unit/test_library_contracts.py checks the arq they were written against)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from signal import Signals
from typing import Any

from arq import Worker
from arq.connections import create_pool
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.jobs import SerializationError, deserialize_job_raw
from arq.utils import ms_to_datetime, timestamp_ms
from arq.worker import Function, Retry, RetryJob
from redis.exceptions import RedisError

from orchestrator import queue
from orchestrator.keys import CONTROL_CHANNEL, WAKE_CHANNEL
from orchestrator.reaper import Reaper
from worker.deps import Deps
from worker.lease import HEARTBEAT_S

log = logging.getLogger(__name__)


#: arq's claim of a queued job (start_jobs: WATCH the in-progress key, EXISTS, ZSCORE, then MULTI
#: PSETEX EXEC) and the first round trip of its run (run_job: GET the job, INCR and EXPIRE its try
#: count) as one script for several jobs. KEYS: the queue, then each job's in-progress, job and
#: retry keys; ARGV: the time, the in-progress TTL, the retry keys' TTL and the job ids. Returns
#: for each job its score ("" when it is running elsewhere, gone, or deferred to later: the cases
#: arq skips), its payload and its try ("" and 0 when the job's key is gone: arq's run_job reports that).
CLAIM = """
local now, ttl, keep = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local out = {}
for i = 0, (#KEYS - 1) / 3 - 1 do
  local job, running, key, tries = ARGV[i + 4], KEYS[3 * i + 2], KEYS[3 * i + 3], KEYS[3 * i + 4]
  local score = redis.call('zscore', KEYS[1], job)
  if redis.call('exists', running) == 1 or not score or tonumber(score) > now then
    out[#out + 1] = ''
    out[#out + 1] = ''
    out[#out + 1] = 0
  else
    redis.call('psetex', running, ttl, '1')
    local payload = redis.call('get', key)
    out[#out + 1] = score
    if payload then
      out[#out + 1] = payload
      out[#out + 1] = redis.call('incr', tries)
      redis.call('expire', tries, keep)
    else
      out[#out + 1] = ''
      out[#out + 1] = 0
    end
  end
end
return out
"""
#: arq's TTL of a job's try count (run_job).
TRIES_TTL_S = 88400


class OrchestratorWorker(Worker):
    """arq's Worker, woken by a Redis message on enqueue and when a slot frees, not only by its poll,
    and claiming queued jobs in one round trip for all its free slots."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wake = asyncio.Event()
        self._claim: Any = None
        self._fetched: dict[str, tuple[bytes, int]] = {}  # claimed jobs' payloads and tries, for run_job
        self._ending: list[str] = []  # finished jobs whose keys go in the next round trip
        self._ended: asyncio.Future[None] | None = None

    async def main(self) -> None:
        if self._pool is None:
            self._pool = await create_pool(self.redis_settings)
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        helpers = [
            asyncio.create_task(self._listen(), name="worker-wake"),
            asyncio.create_task(self._keep_leases(), name="worker-leases"),
        ]
        try:
            await self._loop()
        finally:
            for helper in helpers:
                helper.cancel()
            for helper in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await helper

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._poll_iteration()
                if self.burst and await self._burst_done():
                    return
            except (RedisError, OSError) as exc:  # Redis restarting: running jobs go on; poll again soon
                log.warning("worker cannot reach Redis (%s); retrying", exc)
                await asyncio.sleep(1)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_delay_s):
                    await self._wake.wait()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's start_jobs with one script per batch instead of four round trips per job.

        arq starts jobs one at a time, each after WATCH, EXISTS, ZSCORE and EXEC round trips; on a
        loop busy with the jobs themselves that kept a worker of ten slots at two jobs running on
        average (measured in bench/). Here every free slot is filled from one CLAIM call, which
        makes the same checks atomically, in queue order, and also hands over what run_job would
        fetch next (the payload and the try)."""
        if self._claim is None:
            self._claim = self.pool.register_script(CLAIM)
        waiting = [job_id.decode() for job_id in job_ids]
        while waiting:
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                return
            self.job_counter += 1
            batch = [waiting.pop(0)]
            while waiting and self.job_counter < self.max_jobs and not self.sem.locked():
                await self.sem.acquire()  # a free slot: returns at once
                self.job_counter += 1
                batch.append(waiting.pop(0))
            keys = [self.queue_name]
            for job_id in batch:
                keys += (in_progress_key_prefix + job_id, job_key_prefix + job_id, retry_key_prefix + job_id)
            timeout_ms = int(self.in_progress_timeout_s * 1000)
            try:
                claimed = await self._claim(keys=keys, args=[timestamp_ms(), timeout_ms, TRIES_TTL_S, *batch])
            except BaseException:  # Redis away: give the batch's slots back, or the worker would stay full
                self.job_counter -= len(batch)
                for _ in batch:
                    self.sem.release()
                raise
            for job_id, score, payload, job_try in zip(batch, *[claimed[i::3] for i in range(3)], strict=True):
                if not score:  # running elsewhere, finished, or deferred: arq skips these too
                    self.job_counter -= 1
                    self.sem.release()
                    continue
                if payload:
                    self._fetched[job_id] = (payload, job_try)
                task = self.loop.create_task(self.run_job(job_id, int(float(score))))
                task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
                self.tasks[job_id] = task

    async def run_job(self, job_id: str, score: int) -> None:
        """arq's run_job for a job whose payload and try came with its claim: the job's function runs
        in this task (arq makes one more per job, and a round trip before it), under the function's
        timeout, with arq's rules for retries. Whatever is not the plain case (a payload arq cannot
        read, a function it does not know, too many tries, a worker with job hooks, its own
        deserializer or kept results) goes to arq's own run_job, which handles it, after the try
        taken here is given back."""
        fetched = self._fetched.pop(job_id, None)
        if fetched is None:
            await super().run_job(job_id, score)
            return
        payload, job_try = fetched
        try:
            name, args, kwargs, enqueued_try, enqueue_ms = deserialize_job_raw(payload)
        except SerializationError:
            name, enqueued_try = "", 0
        function = self.functions.get(name)
        if (
            not isinstance(function, Function)
            or job_try > (self.max_tries if function.max_tries is None else function.max_tries)
            or (enqueued_try or 0) > job_try
            or self._arqs_own(function)
        ):
            await self.pool.decr(retry_key_prefix + job_id)
            await super().run_job(job_id, score)
            return
        ctx = {
            **self.ctx,
            "job_id": job_id,
            "job_try": job_try,
            "enqueue_time": ms_to_datetime(enqueue_ms),
            "score": score,
        }
        finish, again = True, None
        try:
            async with asyncio.timeout(self.job_timeout_s if function.timeout_s is None else function.timeout_s):
                await function.coroutine(ctx, *args, **kwargs)
        except (asyncio.CancelledError, Retry, RetryJob) as exc:
            if not self.retry_jobs:
                log.exception("job %s failed", job_id)
                self.jobs_failed += 1
            else:  # the worker stops, or the job asked: it runs again (later, for a deferred Retry)
                log.info("job %s will be run again", job_id)
                finish = False
                if isinstance(exc, Retry) and exc.defer_score:
                    again = exc.defer_score + timestamp_ms() - score
                self.jobs_retried += 1
        except Exception:  # the job's function records its own failures; this is a bug in it
            log.exception("job %s failed", job_id)
            self.jobs_failed += 1
        else:
            self.jobs_complete += 1
        await asyncio.shield(self.finish_job(job_id, finish, None, None, False, again, None))

    def _arqs_own(self, function: Function) -> bool:
        """Whether this worker uses what only arq's run_job does: job hooks, its own deserializer, kept results."""
        keep = self.keep_result_s if function.keep_result_s is None else function.keep_result_s
        return bool(
            self.on_job_start
            or self.on_job_end
            or self.after_job_end
            or self.job_deserializer
            or keep
            or self.keep_result_forever
            or function.keep_result_forever
        )

    def handle_sig(self, signum: Signals) -> None:
        """arq's, except that a job already told to stop is not cancelled again: arq cancels every
        running task on every signal, and a second Ctrl-C would break off the first one's hand-back
        of the job, leaving it running in the database until its lease ran out."""
        tasks = self.tasks
        self.tasks = {job_id: task for job_id, task in tasks.items() if not task.cancelling()}
        try:
            super().handle_sig(signum)
        finally:
            self.tasks = tasks

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        """arq's finish_job, with one round trip for all the jobs that end in the same turn of the
        loop (arq makes one per job). Keeps arq's order: the job's keys are gone before its slot frees."""
        if not finish or result_data or keep_in_progress is not None:  # not the plain end: arq's own
            await super().finish_job(
                job_id, finish, result_data, result_timeout_s, keep_result_forever, incr_score, keep_in_progress
            )
            return
        self._ending.append(job_id)
        if self._ended is None:
            self._ended = asyncio.ensure_future(self._end_jobs())
        await asyncio.shield(self._ended)

    async def _end_jobs(self) -> None:
        await asyncio.sleep(0)  # the other jobs that end in this turn of the loop join
        ids, self._ending, self._ended = self._ending, [], None
        async with self.pool.pipeline(transaction=True) as tr:
            tr.delete(
                *(prefix + i for i in ids for prefix in (in_progress_key_prefix, retry_key_prefix, job_key_prefix))
            )
            tr.zrem(abort_jobs_ss, *ids)
            tr.zrem(self.queue_name, *ids)
            await tr.execute()

    async def _burst_done(self) -> bool:
        if self.tasks and not all(t.done() for t in self.tasks.values()):
            return False
        return await self.pool.zcard(self.queue_name) == 0

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._wake.set()  # a slot is free: look for the next job now

    async def _listen(self) -> None:
        while True:
            try:
                async with self.pool.pubsub() as pubsub:
                    await pubsub.subscribe(WAKE_CHANNEL, CONTROL_CHANNEL)
                    async for message in pubsub.listen():
                        if message["type"] != "message":
                            continue
                        if message["channel"] in (CONTROL_CHANNEL, CONTROL_CHANNEL.encode()):
                            self._control(json.loads(message["data"]))
                        else:
                            self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect after Redis restarts
                log.warning("worker lost its Redis subscription (%s); reconnecting", exc)
                await asyncio.sleep(1)

    async def _keep_leases(self) -> None:
        """Renew the leases of this worker's jobs, and take over jobs whose worker died."""
        deps: Deps = self.ctx["deps"]
        reaper = Reaper(deps.svc.engine, deps.svc.redis)
        beats = 0
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            beats += 1
            try:
                await deps.leases.beat(deps.running)
                await reaper.sweep()
                if beats % 3 == 0:  # queued jobs Redis lost (flushed, restarted, down at creation)
                    await queue.reconcile(deps.svc.engine, deps.svc.redis)
                    await deps.limits.hand_out()
            except Exception as exc:  # noqa: BLE001 - Redis or the database away: try again next beat
                log.warning("lease heartbeat failed (%s); retrying", exc)

    def _control(self, signal: dict[str, Any]) -> None:
        deps: Deps | None = self.ctx.get("deps")
        run = deps.running.get(signal.get("job_id", "")) if deps else None
        if run is not None:
            run.signal(str(signal.get("action")))

    def park(self) -> None:
        """A job waits for a person: its slot is free for other jobs meanwhile."""
        self.job_counter -= 1
        self.sem.release()
        self._wake.set()

    async def unpark(self) -> None:
        """The job goes on: it takes a slot again (waiting for one if the worker is full)."""
        await self.sem.acquire()
        self.job_counter += 1
