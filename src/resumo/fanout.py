"""Many requests to one OpenAI-compatible endpoint, a bounded number at a time (distill's teacher, the judge)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from tqdm.auto import tqdm

Item = TypeVar("Item")


async def bounded_gather(ask: Callable[[Item], Awaitable[None]], items: Sequence[Item], concurrency: int, desc: str, unit: str) -> None:
    """Await `ask(item)` for every item, at most `concurrency` at once (vLLM batches what is in flight), with a progress bar."""
    slots = asyncio.Semaphore(concurrency)
    with tqdm(total=len(items), desc=desc, unit=unit) as bar:

        async def one(item: Item) -> None:
            async with slots:
                try:
                    await ask(item)
                finally:
                    bar.update()

        await asyncio.gather(*(one(item) for item in items))
