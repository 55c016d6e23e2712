"""``Deadline``: a reusable no-progress timeout for awaits on a hot path (cheaper than ``asyncio.timeout``).

``asyncio.timeout`` allocates a context object and schedules and cancels a timer for every await; on a warm
keep-alive connection that is several timers per request. A :class:`Deadline` keeps one timer handle per
connection: :meth:`arm` before an await only moves the deadline (a new timer is scheduled only when none is
pending or the new deadline is earlier), :meth:`disarm` after it only clears it. When the timer fires early it
re-schedules itself for the current deadline; when an armed await outlives its deadline the awaiting task is
cancelled and :meth:`expired` turns that cancellation into a timeout (like ``asyncio.timeout``, a cancellation
from anyone else is still a cancellation).
"""

from __future__ import annotations

import asyncio

__all__ = ["Deadline"]


class Deadline:
    """A no-progress timeout for one await at a time (``arm`` → await → ``disarm``); see the module doc."""

    __slots__ = ("_deadline", "_expired", "_handle", "_loop", "_task", "_when")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._when = 0.0
        self._deadline: float | None = None
        self._expired: asyncio.Task[object] | None = None

    def arm(self, seconds: float, task: asyncio.Task[object]) -> None:
        """``task`` is about to await something that must complete within ``seconds``."""
        deadline = self._loop.time() + seconds
        self._deadline = deadline
        self._task = task
        handle = self._handle
        if handle is None or self._when > deadline:
            if handle is not None:
                handle.cancel()
            self._when = deadline
            self._handle = self._loop.call_at(deadline, self._fire)

    def disarm(self, task: asyncio.Task[object]) -> None:
        """The await of ``task`` completed (or failed): no deadline until the next :meth:`arm`."""
        if self._task is task:
            self._deadline = None
            self._task = None

    def expired(self, task: asyncio.Task[object]) -> bool:
        """Call on ``CancelledError``: True when this deadline (and nothing else) cancelled ``task``."""
        if self._expired is not task:
            return False
        self._expired = None
        return task.uncancel() == 0

    def close(self) -> None:
        """Cancel the pending timer (the connection is done)."""
        self._deadline = None
        self._task = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        deadline, task = self._deadline, self._task
        if deadline is None or task is None:
            return
        if self._loop.time() < deadline:
            self._when = deadline
            self._handle = self._loop.call_at(deadline, self._fire)
            return
        self._deadline = None
        self._task = None
        if not task.done():
            self._expired = task
            task.cancel()
