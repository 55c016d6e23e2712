"""``spawn``: ``asyncio.create_task`` that keeps a strong reference until the task is done.

The event loop holds tasks only weakly; a task nobody references can be garbage-collected mid-flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_running: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
    """Start ``coro`` as a task and keep it referenced until it finishes."""
    task = asyncio.create_task(coro, name=name)  # noqa: TID251 - this is the one sanctioned call
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task
