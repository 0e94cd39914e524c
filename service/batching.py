"""Dynamic micro-batching: concurrent requests for one graph are merged into one ONNX Runtime call.

As Triton's dynamic batcher and Ray Serve's `@serve.batch`: a merged call holds at most `max_batch` rows, one graph
runs one call at a time on its own thread (so the event loop never blocks), and requests that arrive while a call
runs are merged into the next one. `max_delay` > 0 additionally holds a lone request that long for company —
worth it only when a graph call costs far more than the wait (large models, GPUs); the default is 0, which adds
no latency at low load and still merges under load. A request that finds the graph idle and nobody queued runs at
once, without the queue and the batching task's wake-up (nothing to merge it with): at low load the batcher costs
no more than a direct thread-pool call. Written by hand because neither of those runs inside a
FastAPI process without bringing its own server, and the logic is a queue plus a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


@dataclass
class _Item:
    array: np.ndarray
    future: asyncio.Future


class MicroBatcher:
    """`await batcher(array)` → the graph's output for those rows, computed together with other callers' rows."""

    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        max_batch: int = 256,
        max_delay_s: float = 0.0,
        enabled: bool = True,
        on_batch: Callable[[int], None] | None = None,
        name: str = "graph",
    ) -> None:
        self.run, self.max_batch, self.max_delay_s, self.enabled = run, max_batch, max_delay_s, enabled
        self.on_batch, self.name = on_batch, name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batch-{name}")
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task | None = None
        self._idle = asyncio.Event()  # set while no graph call of this batcher runs (binds no loop until awaited)
        self._idle.set()
        self._waiting = 0  # callers queued or held by the batching task, not yet in a graph call

    async def __call__(self, array: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        if not self.enabled or len(array) >= self.max_batch:
            if self.on_batch:
                self.on_batch(len(array))
            return await loop.run_in_executor(self._executor, self._run_chunked, array)
        if self._idle.is_set() and not self.max_delay_s and not self._waiting:
            return await self._run_alone(loop, array)
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._loop())
        future: asyncio.Future = loop.create_future()
        assert self._queue is not None
        self._waiting += 1
        await self._queue.put(_Item(array, future))
        return await future

    async def _run_alone(self, loop: asyncio.AbstractEventLoop, array: np.ndarray) -> np.ndarray:
        self._idle.clear()  # callers arriving meanwhile queue up; the batching task merges them once this is done
        try:
            if self.on_batch:
                self.on_batch(len(array))
            return await loop.run_in_executor(self._executor, self.run, array)
        finally:
            self._idle.set()

    def claim(self) -> bool:
        """Take the graph for a caller that calls it itself in one thread hop with other work
        (`LoadedModel.run_alone`): only when a lone call would run at once anyway — batching on, the graph idle,
        nobody queued, no hold-for-company delay. Callers arriving meanwhile queue and are merged after `release`."""
        if self.enabled and self._idle.is_set() and not self.max_delay_s and not self._waiting:
            self._idle.clear()
            return True
        return False

    def release(self) -> None:
        self._idle.set()

    def run_claimed(self, array: np.ndarray) -> np.ndarray:
        """The graph on `array`, in the calling thread, by a caller holding `claim` (metrics observed as usual)."""
        if self.on_batch:
            self.on_batch(len(array))
        return self._run_chunked(array)

    @property
    def executor(self) -> ThreadPoolExecutor:
        return self._executor

    def _run_chunked(self, array: np.ndarray) -> np.ndarray:
        parts = [self.run(array[i : i + self.max_batch]) for i in range(0, len(array), self.max_batch)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            await self._idle.wait()  # a lone call (`_run_alone`) is running: what queues meanwhile is merged after it
            items, rows = [first], len(first.array)
            deadline = time.monotonic() + self.max_delay_s
            while rows < self.max_batch:
                # Take what is already waiting without sleeping; then wait out the rest of the delay.
                timeout = deadline - time.monotonic()
                try:
                    item = (
                        self._queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(self._queue.get(), timeout)
                    )
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                if rows + len(item.array) > self.max_batch:
                    await self._run(loop, items)  # keep each merged call within max_batch
                    items, rows = [], 0
                items.append(item)
                rows += len(item.array)
            await self._run(loop, items)

    async def _run(self, loop: asyncio.AbstractEventLoop, items: list[_Item]) -> None:
        self._waiting -= len(items)
        live = [item for item in items if not item.future.cancelled()]
        if not live:
            return
        merged = np.concatenate([item.array for item in live]) if len(live) > 1 else live[0].array
        if self.on_batch:
            self.on_batch(len(merged))
        self._idle.clear()
        try:
            output = await loop.run_in_executor(self._executor, self.run, merged)
        except Exception as error:  # every waiting caller sees the error, none hangs
            for item in live:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        finally:
            self._idle.set()
        start = 0
        for item in live:
            stop = start + len(item.array)
            if not item.future.done():
                item.future.set_result(output[start:stop])
            start = stop

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)
