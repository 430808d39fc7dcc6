"""Coalescing concurrent REST calls into `batch` requests of up to 50 commands.

Calls submitted while the flusher waits — a short collection window, then the throttle —
leave together: one command goes out as a plain call, several as one `batch` (halt=0, so
one caller's error never touches another's), and the answers are split back in order to
each caller. Every HTTP request takes one throttle slot (`throttle`), which the sender
gives back when the answer is in (`release`, also called here for a slot left unused).
"""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

BATCH_MAX_COMMANDS = 50
# Longest command string coalesced; longer ones (rare, huge params) go out alone.
MAX_COMMAND_CHARS = 30_000
_REFERENCE = re.compile(r"\$(result|next|total|time|error)\[", re.IGNORECASE)
NOT_BATCHABLE_METHODS = frozenset({"batch", "upload", "download"})


def _coalescable_value(value: Any) -> bool:
    if isinstance(value, set | frozenset):
        return False  # JSON sends it as a list; a query string cannot
    if isinstance(value, Mapping):
        return bool(value) and all(_coalescable_value(v) for v in value.values())
    if isinstance(value, list | tuple):
        return bool(value) and all(_coalescable_value(v) for v in value)
    if isinstance(value, str):
        return _REFERENCE.search(value) is None
    return True


def coalescable(method: str, params: Mapping[str, Any]) -> bool:
    """Whether a call means the same inside `batch` as on its own.

    Not when a parameter is an empty container (a query string cannot say `[]`) or holds a
    `$result[...]`-like string (the portal would substitute it).
    """
    if method.lower() in NOT_BATCHABLE_METHODS:
        return False
    return all(_coalescable_value(v) for v in params.values())


@dataclass
class Pending:
    method: str
    params: Mapping[str, Any]
    command: str
    future: asyncio.Future[Any]


SendOne = Callable[[str, Mapping[str, Any]], Awaitable[Any]]
SendBatch = Callable[[list[Pending]], Awaitable[list[tuple[Any, BaseException | None]]]]
Throttle = Callable[[], Awaitable[None]]
Release = Callable[[], None]


def _copy_error(error: BaseException) -> BaseException:
    """A separate exception object per caller (tracebacks must not be shared)."""
    try:
        return copy.copy(error)
    except Exception:  # pragma: no cover - exotic exceptions
        return error


class Coalescer:
    """Queues calls of one client and flushes them through the throttle in batches."""

    def __init__(
        self,
        send_one: SendOne,
        send_batch: SendBatch,
        throttle: Throttle,
        release: Release,
        *,
        window: float = 0.005,
        max_commands: int = BATCH_MAX_COMMANDS,
    ) -> None:
        self._send_one = send_one
        self._send_batch = send_batch
        self._throttle = throttle
        self._release = release
        self.window = window
        self.max_commands = max_commands
        self._queue: list[Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    async def submit(self, method: str, params: Mapping[str, Any], command: str) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop: forget the old one's tasks
            self._loop, self._flusher, self._queue = loop, None, []
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(Pending(method, params, command, future))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            if self.window > 0:
                await asyncio.sleep(self.window)
            while True:
                self._queue = [p for p in self._queue if not p.future.done()]
                if not self._queue:
                    return
                await self._throttle()
                chunk = [p for p in self._queue[: self.max_commands] if not p.future.done()]
                del self._queue[: self.max_commands]
                if not chunk:  # every caller gave up while we waited for the slot
                    self._release()
                    continue
                task = asyncio.get_running_loop().create_task(self._dispatch(chunk))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
        finally:
            self._flusher = None

    async def _dispatch(self, chunk: list[Pending]) -> None:
        outcomes: list[tuple[Any, BaseException | None]]
        try:
            if len(chunk) == 1:
                only = chunk[0]
                outcomes = [(await self._send_one(only.method, only.params), None)]
            else:
                outcomes = await self._send_batch(chunk)
        except Exception as error:
            for pending in chunk:
                if not pending.future.done():
                    pending.future.set_exception(_copy_error(error))
            return
        except BaseException:
            for pending in chunk:
                pending.future.cancel()
            raise
        for pending, (result, failure) in zip(chunk, outcomes, strict=True):
            if pending.future.done():
                continue
            if failure is not None:
                pending.future.set_exception(failure)
            else:
                pending.future.set_result(result)

    async def aclose(self) -> None:
        """Fail whatever is still queued (the client is closing)."""
        for pending in self._queue:
            if not pending.future.done():
                pending.future.cancel()
        self._queue = []
        for task in list(self._inflight):
            task.cancel()
