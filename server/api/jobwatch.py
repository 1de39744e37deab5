"""WatchMigrationJob streams fed by one poller per process, not one poll loop per stream.

A thousand clients watching jobs used to mean a thousand store reads every 200 ms. Here
each stream subscribes to its job; one task reads each job being watched once per tick
(however many streams watch it) and pushes a change to all its subscribers. The task
stops when nobody watches and starts again with the next subscriber.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..process import metrics

Key = tuple[str, str]  # (org_id, job_id)


@dataclass
class _Topic:
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    job: Any = None  # the latest summary read (authz.migration.jobs.Job)
    error: BaseException | None = None
    version: int = 0
    watchers: int = 0


def _moved(topic: _Topic, seen: int) -> bool:
    return topic.version > seen


class JobWatch:
    """Progress of watched jobs, read by one task and fanned out to every stream."""

    def __init__(self, read: Callable[[str, str], Awaitable[Any]], interval: float = 0.2) -> None:
        self._read = read  # (org_id, job_id) -> the job's summary (raises NotFound)
        self.interval = interval
        self._topics: dict[Key, _Topic] = {}
        self._task: asyncio.Task[None] | None = None

    async def follow(self, org_id: str, job_id: str) -> AsyncIterator[Any]:
        """The job's summary now, then each time its state or counts move; ends when the
        job is done. Errors reading it (NotFound) are raised here."""
        key = (org_id, job_id)
        topic = self._topics.get(key)
        if topic is None:
            topic = self._topics[key] = _Topic()
        topic.watchers += 1
        if self._task is None or self._task.done():
            # A context of its own: not the first stream's (its deadline, its caller).
            self._task = asyncio.get_running_loop().create_task(
                self._poll(), name="authz-job-watch", context=contextvars.Context())
        seen = 0
        try:
            while True:
                async with topic.changed:
                    await topic.changed.wait_for(functools.partial(_moved, topic, seen))
                    seen, job, error = topic.version, topic.job, topic.error
                if error is not None:
                    raise error
                yield job
                if job.state == "done":
                    return
        finally:
            topic.watchers -= 1

    async def _poll(self) -> None:
        last: dict[Key, tuple[Any, ...]] = {}
        while self._topics:
            for key, topic in list(self._topics.items()):
                if topic.watchers <= 0:
                    del self._topics[key]
                    last.pop(key, None)
                    continue
                metrics.MIGRATION_WATCH_READS.inc()
                try:
                    job = await self._read(*key)
                    error: BaseException | None = None
                    state: tuple[Any, ...] = (job.state, job.done, job.rejected)
                except Exception as exc:  # NotFound and store errors go to the streams
                    job, error, state = None, exc, ("error", repr(exc))
                if last.get(key) != state:
                    last[key] = state
                    async with topic.changed:
                        topic.job, topic.error = job, error
                        topic.version += 1
                        topic.changed.notify_all()
                if error is not None or state[0] == "done":
                    del self._topics[key]  # final: streams already have it
                    last.pop(key, None)
            await asyncio.sleep(self.interval)

    def stop(self) -> None:
        """End the poller (thread-safe: the shutdown calls it off the loop)."""
        task = self._task
        if task is not None:
            task.get_loop().call_soon_threadsafe(task.cancel)
