"""Bounded fan-out: many requests to one OpenAI-compatible endpoint, a bounded number at a
time (distill's teacher, the judge), and jobs run a bounded window ahead of a consumer that
takes their results in order (scrape's page fetching and cleaning)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from typing import TypeVar

from tqdm.auto import tqdm

Item = TypeVar("Item")
Key = TypeVar("Key")
Result = TypeVar("Result")


def in_order(pool: Executor | None, jobs: Iterable[tuple[Key, Callable[[], Result] | None]], ahead: int) -> Iterator[tuple[Key, Result | None]]:
    """(key, job's result) for each job, in the jobs' order, with at most `ahead` jobs
    submitted to `pool` beyond the one being waited for; a None job gives None, and with
    no pool each job runs here when its turn comes. Stopping early (the consumer is done,
    or an error) cancels the jobs not yet started and shuts the pool down."""
    if pool is None:
        yield from ((key, job() if job else None) for key, job in jobs)
        return
    window: deque = deque()
    try:
        for key, job in jobs:
            window.append((key, pool.submit(job) if job else None))
            if len(window) > ahead:
                yield _result(*window.popleft())
        while window:
            yield _result(*window.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _result(key, future) -> tuple:
    return key, future.result() if future else None


async def bounded_gather(ask: Callable[[Item], Awaitable[None]], items: Sequence[Item], concurrency: int, desc: str, unit: str) -> None:
    """Await `ask(item)` for every item, at most `concurrency` at once (vLLM batches what is in flight), with a progress bar."""
    slots = asyncio.Semaphore(concurrency)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request would bury the progress bar
    with tqdm(total=len(items), desc=desc, unit=unit) as bar:

        async def one(item: Item) -> None:
            async with slots:
                try:
                    await ask(item)
                finally:
                    bar.update()

        await asyncio.gather(*(one(item) for item in items))
