"""Group commit: writes submitted while a transaction commits go together into the next one.

No timer: an idle relay writes each item at once; under load, items queue while the previous
transaction commits and the next takes them all, so the number of transactions adapts to the
load. Each caller gets its own result only after its item's transaction has committed. When a
whole batch fails, its items are written one by one, so one bad item fails only itself. An item
whose caller stopped waiting (a timeout) is still written; past `max_waiting` queued items (a
hanging database) new ones are refused at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Overloaded(Exception):
    """More items wait than `max_waiting` (the database is hanging): refused at once."""


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        write: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        max_batch: int = 200,
        max_waiting: int = 10_000,
    ) -> None:
        self._write = write  # one transaction for the items; one result per item, in order
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """The item's result once its transaction has committed."""
        if len(self._queue) >= self.max_waiting:
            raise Overloaded(f"{len(self._queue)} writes waiting for the database")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._run(), name="group-commit")
        return await future

    async def _run(self) -> None:
        while self._queue:
            await asyncio.sleep(0)  # let callers that are ready join this batch
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                await self._settle(batch)
            except BaseException as exc:  # cancelled: nobody waits in vain
                for _, future in [*batch, *self._queue]:
                    _resolve(future, exc)
                self._queue = []
                raise

    async def _settle(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._write([item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _resolve(batch[0][1], exc)
                return
            for one in batch:
                await self._settle([one])
            return
        for (_, future), result in zip(batch, results, strict=True):
            _resolve(future, result)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)


def _resolve(future: asyncio.Future[R], outcome: R | BaseException) -> None:
    if future.done():  # the caller went away; its item was written (or not) all the same
        return
    if isinstance(outcome, asyncio.CancelledError):
        future.cancel()
    elif isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
