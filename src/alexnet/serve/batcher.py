"""The micro-batcher: the views of concurrent requests through the network together.

It waits at most `max_wait` seconds for more once a request is waiting, and sends at most
`max_batch` views, on one inference thread. Each request gets its own views' logits back
(`submit`); what it makes of them (a softmax averaged over views, Open Inference Protocol
outputs) is the caller's. The thread (which also runs Grad-CAM and the neighbor
searches, so that no two of them compete for the cores).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from alexnet.core.errors import UserError


@dataclass
class _Waiting:
    views: torch.Tensor
    future: asyncio.Future = field(repr=False)
    since: float = 0.0  # when it began waiting (time.perf_counter)


class Batcher:
    """Runs `engine.logits` on the views of concurrent requests together.

    The first waiting request opens a batch; the batch closes when it holds `max_batch`
    views, or when `max_wait` seconds have passed, or as soon as it holds as many requests
    as the largest of the last few batches and no other request is on its way
    (`preparing()`: requests let in whose photos are still being read or decoded),
    whichever is first; a request with more views than `max_batch` goes alone. Waiting
    for the load the last batches saw makes the batches as large as the load allows (8
    clients give batches of 8, not a batch of 3 and one of 5) while a lone client waits
    for nothing. Requests whose caller has given up (timed out) are dropped before the
    batch runs. `metrics` (alexnet.serve.metrics.Metrics), when given, hears each request's
    wait, each batch's size and its forward pass's time."""

    def __init__(
        self, engine, max_batch: int = 32, max_wait: float = 0.02, preparing=lambda: 0,
        metrics=None,
    ) -> None:  # fmt: skip
        if max_batch < 1 or max_wait < 0:
            raise UserError(f"max batch must be 1 or more and max wait 0 or more: "
                             f"{max_batch}, {max_wait}")  # fmt: skip
        self.engine, self.max_batch, self.max_wait = engine, max_batch, max_wait
        self.preparing, self.metrics = preparing, metrics
        self.waiting: deque[_Waiting] = deque()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="alexnet-network")
        self.batches = self.photos = 0
        self.computing = 0  # requests whose views are in the forward pass now
        self.recent: deque[int] = deque([1], maxlen=8)  # requests in the last batches
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._ready = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.executor.shutdown(wait=True, cancel_futures=True)

    async def submit(self, views: torch.Tensor) -> torch.Tensor:
        """The logits (V, classes) of `views` (V, C, h, w), computed in some batch."""
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(_Waiting(views, future, time.perf_counter()))
        self._ready.set()
        return await future

    def nudge(self) -> None:
        """A request on its way will not come (its photo was refused): look again."""
        if self._ready is not None:
            self._ready.set()

    async def run(self, function, *args):
        """`function(*args)` on the network's thread (Grad-CAM, neighbor searches)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def _queued_views(self) -> int:
        return sum(len(w.views) for w in self.waiting)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._ready.wait()
            deadline = loop.time() + self.max_wait
            expected = max(self.recent)
            while (
                self._queued_views() < self.max_batch
                and (self.preparing() > 0 or len(self.waiting) < expected)
                and (left := deadline - loop.time()) > 0
            ):
                self._ready.clear()
                try:
                    await asyncio.wait_for(self._ready.wait(), left)
                except asyncio.TimeoutError:
                    break
            batch, count = [], 0
            while self.waiting and (
                not batch or count + len(self.waiting[0].views) <= self.max_batch
            ):
                item = self.waiting.popleft()
                if not item.future.done():  # its caller has not given up
                    batch.append(item)
                    count += len(item.views)
            if not self.waiting:
                self._ready.clear()
            if not batch:
                continue
            views = [w.views for w in batch]
            if self.metrics is not None:
                now = time.perf_counter()
                for w in batch:
                    self.metrics.queue_wait.observe(now - w.since)
                self.metrics.batch_size.observe(count)
            self.computing = len(batch)
            try:
                out = await loop.run_in_executor(self.executor, self._timed, views)
            except Exception as error:  # the network failed: every caller hears of it
                for w in batch:
                    if not w.future.done():
                        w.future.set_exception(error)
                continue
            finally:
                self.computing = 0
            self.batches, self.photos = self.batches + 1, self.photos + len(batch)
            self.recent.append(len(batch))
            for w, p in zip(batch, out, strict=True):
                if not w.future.done():
                    w.future.set_result(p)

    def _timed(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        start = time.perf_counter()
        out = self.engine.logits(views)
        if self.metrics is not None:
            self.metrics.inference.observe(time.perf_counter() - start)
        return out
