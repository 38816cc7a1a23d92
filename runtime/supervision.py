"""Background tasks that outlive their errors.

A process's background duties (a worker's heartbeat and sweep, a LISTEN connection's
watch) must not end silently: a worker whose heartbeat died would keep claiming while
its leases lapse. `supervise` runs such a duty, logs any exception it meets and starts
it again after a capped, jittered backoff. An error the caller calls transient (the
database away, a canceled query) is logged as a warning; any other is a bug, logged
with its traceback. A duty that keeps failing with bugs and never runs well in between
raises `SupervisionError`: the process should stop with a non-zero status, so that its
own supervisor (systemd, Kubernetes) starts a fresh one rather than keep a half-alive
process.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

FIRST_DELAY_SECONDS = 0.1
MOST_DELAY_SECONDS = 5.0
BUGS_BEFORE_GIVING_UP = 5
"""Bugs in a row (with no healthy run between them) after which a duty is given up."""
HEALTHY_SECONDS = 30.0
"""A run that lasts this long counts as healthy: the delay and the bug count start over."""


class SupervisionError(RuntimeError):
    """A supervised duty failed too often to be started again."""


def _never(_exc: BaseException) -> bool:
    return False


async def supervise(
    name: str,
    duty: Callable[[], Awaitable[None]],
    *,
    transient: Callable[[BaseException], bool] = _never,
    most_delay: float = MOST_DELAY_SECONDS,
    bugs_before_giving_up: int = BUGS_BEFORE_GIVING_UP,
) -> None:
    """Run `duty` until it returns, starting it again whenever it raises.

    Raises `SupervisionError` after `bugs_before_giving_up` failures in a row that
    `transient` does not excuse."""
    loop = asyncio.get_running_loop()
    first_delay = min(FIRST_DELAY_SECONDS, most_delay)
    delay, bugs = first_delay, 0
    while True:
        started = loop.time()
        try:
            await duty()
            return
        except Exception as exc:
            if loop.time() - started >= HEALTHY_SECONDS:
                delay, bugs = first_delay, 0
            if transient(exc):
                log.warning("%s: %s; starting it again in %.1f s", name, exc, delay)
            else:
                bugs += 1
                log.exception(
                    "%s failed with an unexpected error (%d of %d in a row); starting it "
                    "again in %.1f s",
                    name,
                    bugs,
                    bugs_before_giving_up,
                    delay,
                )
                if bugs >= bugs_before_giving_up:
                    raise SupervisionError(f"{name} failed {bugs} times in a row") from exc
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))
        delay = min(delay * 2, most_delay)
