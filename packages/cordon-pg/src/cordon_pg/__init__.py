"""cordon-pg: PostgreSQL credential listeners.

A listener accepts PostgreSQL connections on 127.0.0.1, logs in to the real server with the password from the
secret store, then relays the session. ``protocol``, ``scram`` and ``session`` are sans-IO (no sockets); the
asyncio edge is ``server``; ``runner`` is what ``cordon start`` calls (entry-point group ``cordon.listeners``).
"""

from __future__ import annotations

__version__ = "0.1.0"
