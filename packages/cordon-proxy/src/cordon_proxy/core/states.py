"""The states of a :class:`~cordon_proxy.core.session.Session`, what the edge reads in each, and the error
raised when an event arrives in a state that does not expect it."""

from __future__ import annotations

from enum import Enum

__all__ = ["ProtocolError", "Read", "State"]


class ProtocolError(Exception):
    """An event the session's state does not expect (a bug in the edge, never the peer's fault: malformed
    input from a peer is answered, not raised). Like h11's ``LocalProtocolError``."""


class State(Enum):
    """Where one client connection stands. The reply a state waits for names the command that asked for it."""

    IDLE = "idle"  # between requests: reading the next request head (plain listener or inside a MITM tunnel)
    HANDSHAKE = "handshake"  # StartClientTLS sent (CONNECT to a routed host answered 200): awaits ClientTLSReady
    RESOLVE = "resolve"  # Resolve sent (unrouted destination): awaits Resolved / ResolveFailed
    OPEN_TUNNEL = "open-tunnel"  # OpenTunnel sent (unrouted CONNECT): awaits TunnelConnected / UpstreamFailed
    SECRET = "secret"  # FetchSecret sent (routed request admitted): awaits SecretReady / SecretFailed
    OPEN_UPSTREAM = "open-upstream"  # OpenUpstream sent: awaits UpstreamConnected / UpstreamFailed
    FORWARD = "forward"  # head sent upstream: request body out, response back (client and upstream data)
    SPLICED = "spliced"  # Splice sent: the edge relays bytes both ways; the session has no more say
    CLOSED = "closed"  # CloseClient sent: every later event is ignored (I/O that was in flight)

    __hash__ = object.__hash__  # members are singletons; Enum's own __hash__ is a Python call per table lookup


class Read(Enum):
    """What the edge reads next (``Session.next_read``), and so which timeout applies."""

    REQUEST = "request"  # the client: a new request head (idle timeout)
    HEAD = "head"  # the client: the rest of a request head already started (head timeout)
    BODY = "body"  # the client: the request body; the upstream is read too (it may answer early)
    RESPONSE = "response"  # the upstream only: the response (response timeout); the client is not read
    REPLY = "reply"  # nothing: the reply to a command is awaited
    DISCARD = "discard"  # the client, discarding: a lingering close after an early answer (CloseClient.linger)
    DONE = "done"  # nothing more: closed, or spliced (the edge relays bytes)
