"""Wait for an idle machine before a timed suite, and refuse to start one on a busy machine.

The 1-minute load average must fall below QUIET_LOAD (one run's children leave it above 1
for a minute or so after they end, which is the wait between suites). A machine that stays
busy past ``max_wait_s`` stops the record: times taken beside other work would only be
marked "under load" and measured again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

QUIET_LOAD = 0.5
POLL_S = 10.0


class Busy(RuntimeError):
    """The machine stayed busy for longer than the record may wait."""


def wait_for_quiet(
    max_wait_s: float,
    *,
    say: Callable[[str], None] = print,
    load: Callable[[], float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Return the 1-minute load once it is below QUIET_LOAD; raise :class:`Busy` after
    ``max_wait_s`` seconds of waiting."""
    read = load or (lambda: os.getloadavg()[0])
    start = clock()
    current = read()
    if current < QUIET_LOAD:
        return current
    say(f"waiting for the 1-minute load ({current:.2f}) to fall below {QUIET_LOAD} ...")
    while True:
        waited = clock() - start
        if waited >= max_wait_s:
            raise Busy(
                f"the 1-minute load stayed at or above {QUIET_LOAD} for {waited:.0f} s "
                f"(now {current:.2f}); stop the other work (uptime, top) and run the same "
                "command again: it resumes"
            )
        sleep(min(POLL_S, max(0.0, max_wait_s - waited)))
        current = read()
        if current < QUIET_LOAD:
            say(f"load {current:.2f}: starting")
            return current
