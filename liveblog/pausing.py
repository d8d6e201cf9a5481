"""The photo decoders step aside while the web process writes changes to its readers (issue 11).

On a small machine a decoding process slows the readers' streams merely by being on a CPU, even at
``SCHED_IDLE``: a process at that priority doing nothing but spin moved the readers' p99 1.6-1.9× on
a 2-vCPU machine, while the upload bodies alone did not move it. So when the hub is about to publish a
batch of changes, the web process stops its own decoding processes (SIGSTOP) and lets them go on
(SIGCONT) ``seconds`` after the batch's last write: one timer, pushed later by each batch. Counting
from the last write, not from the first, matters: writing one change to 10,000 readers takes ~0.1-0.2 s
on its own, and the readers' last reads come after that; a pause counted from the start of the batch
let the decoders run again while the slowest readers were still being served.

A decode paused this way only takes longer. Under a steady stream of changes closer together than
``seconds`` the decoders would never run, so one pause lasts at most ``LONGEST_PAUSE`` times
``seconds``, after which they run for at least ``seconds`` before they can be stopped again (at least
a sixth of the time for the uploads, however busy the blog).

Only PIDs the caller names are signalled (the web process's own decoders, see
``MediaWorkers.pids``); one that has gone meanwhile is skipped. A decoder stopped this way still dies
with the web process (its ``PR_SET_PDEATHSIG`` is SIGKILL, which ends a stopped process too), and
:meth:`Pauser.resume` lets them all go on at shutdown and before a pool is replaced.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

LONGEST_PAUSE = 5  # times ``seconds``


def _signal(pid: int, signum: int) -> bool:
    """Send ``signum`` to ``pid``; False when it has gone."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


class Pauser:
    """Stops the processes ``pids()`` names while changes are being published; ``seconds`` 0: never."""

    def __init__(self, pids: Callable[[], list[int]], seconds: float) -> None:
        self._pids = pids
        self.seconds = seconds
        self._stopped: list[int] = []
        self._timer: asyncio.TimerHandle | None = None
        self._until = 0.0  # loop time at which the stopped processes go on
        self._latest = 0.0  # ... at the latest (LONGEST_PAUSE)
        self._unpaused_until = 0.0  # after a pause cut short by LONGEST_PAUSE: no new one before this

    def publishing(self) -> None:
        """The hub is about to write a batch of changes to its readers, or has just written it (called
        before and after each batch: the pause lasts at least ``seconds`` past its last write)."""
        if self.seconds <= 0:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._timer is not None:
            self._until = min(now + self.seconds, self._latest)
            return
        if now < self._unpaused_until:
            return
        pids = self._pids()  # [] until the first upload starts the pool
        if not pids:
            return
        self._stopped = [pid for pid in pids if _signal(pid, signal.SIGSTOP)]
        if self._stopped:
            self._until, self._latest = now + self.seconds, now + self.seconds * LONGEST_PAUSE
            self._timer = loop.call_later(self.seconds, self._due)

    def _due(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now < self._until:  # published since the timer was set
            self._timer = loop.call_later(self._until - now, self._due)
            return
        self._timer = None
        if self._until >= self._latest:
            self._unpaused_until = now + self.seconds
        self.resume()

    def resume(self) -> None:
        """Let every process stopped here go on now (idempotent)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        stopped, self._stopped = self._stopped, []
        for pid in stopped:
            _signal(pid, signal.SIGCONT)
