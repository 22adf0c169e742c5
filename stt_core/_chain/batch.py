"""The batch driver: a request goes to the chain's engines in order until one answers (an answer
the chain doubts counts as none; when every answer is doubted, the best of them is given).

With ``hedge_after`` set, the engine started last (the front) that has not answered in time races
the next one beside it; that one becomes the front, and may be raced in turn. The next engine also
starts when the front fails. The first answer wins and the others are cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from .._errors import STTError
from .._provider import Provider
from .._types import Transcript
from . import policy
from .links import Link, Links, Request, Unanswered

logger = logging.getLogger("stt_core.chain")
Call = Callable[[Provider], Awaitable[Transcript]]


async def first_answer(
    links: Links, call: Call, request: Request, *, hedge_after: float | policy.Percentile | None
) -> Transcript:
    if hedge_after is None:
        for link in links:
            with contextlib.suppress(Unanswered):
                return await links.answer(link, call, request)
        return request.best_doubted()
    return await _race(links, call, request, hedge_after)


async def _race(
    links: Links, call: Call, request: Request, hedge_after: float | policy.Percentile
) -> Transcript:
    loop = asyncio.get_running_loop()
    waiting: deque[Link] = deque(links)  # not started yet, in order
    racing: set[asyncio.Task[Transcript]] = set()
    front: asyncio.Task[Transcript] | None = None
    front_link: Link | None = None
    hedge_at: float | None = None  # when the front is raced, if it has not answered
    delay: float | None = None
    try:
        while True:
            if front is None and waiting:
                front_link = waiting.popleft()
                front = asyncio.ensure_future(links.answer(front_link, call, request))
                racing.add(front)
                delay = policy.hedge_delay(hedge_after, front_link.latencies)
                hedge_at = None if delay is None else loop.time() + delay
            if not racing:
                return request.best_doubted()
            timeout = None if hedge_at is None else max(0.0, hedge_at - loop.time())
            done, _ = await asyncio.wait(racing, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not done:  # the front is slow: the next engine races it, if one could answer now
                hedge_at = None
                if front_link is not None and links.could_answer_after(front_link, request):
                    logger.info("%s: no answer in %.3fs, hedging", front_link.name, delay)
                    front, request.hedged = None, True
                continue
            for task in done:
                racing.discard(task)
                if task is front:
                    front, hedge_at = None, None
                with contextlib.suppress(Unanswered):
                    return task.result()
    finally:
        for task in racing:
            task.cancel()
        for task in racing:
            with contextlib.suppress(asyncio.CancelledError, Unanswered, STTError):
                await task
