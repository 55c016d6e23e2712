"""Behaviour kept by the hot-path optimisations: no timing here, only what must stay true."""

from __future__ import annotations

import asyncio
import gc
import io

import pytest
from cordon_config.model import HeaderAuth, Route, SecretRef
from cordon_config.secrets import header_value_problem, is_header_value
from cordon_proxy._deadline import Deadline
from cordon_proxy.core import commands as cmd
from cordon_proxy.core import events as ev
from cordon_proxy.core.errors import one_line
from cordon_proxy.core.http1 import Body, FramingError, MessageEnd, ResponseHead, ResponseParser
from cordon_proxy.core.inject import forward_request_headers
from cordon_proxy.core.session import Session, Settings
from cordon_proxy.logs import Logger
from hypothesis import given
from hypothesis import strategies as st

API = Route("api", "api.test", HeaderAuth("Authorization", "Bearer"), SecretRef("env", {"var": "X"}))
REQUEST = b"GET /small HTTP/1.1\r\nHost: api.test:8443\r\nUser-Agent: t\r\nAuthorization: Bearer dummy\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"


class _Secret:
    def reveal(self) -> str:
        return "sk-real"


def _mitm_session() -> Session:
    s = Session(Settings(routes=(API,), listen_port=6790))
    s.handle(ev.ClientData(b"CONNECT api.test:8443 HTTP/1.1\r\nHost: api.test:8443\r\n\r\n"))
    s.handle(ev.ClientTLSReady(s.awaiting, "api.test"))
    return s


def _exchange(s: Session, response: bytes = RESPONSE) -> tuple[bytes, bytes, list[object]]:
    (fetch,) = [c for c in s.handle(ev.ClientData(REQUEST)) if isinstance(c, cmd.FetchSecret)]
    (connect,) = s.handle(ev.SecretReady(fetch, _Secret()))
    up = s.handle(ev.UpstreamConnected(connect, True))
    out = s.handle(ev.UpstreamData(response))
    upstream = b"".join(c.data for c in up if isinstance(c, cmd.SendUpstream))
    client = b"".join(c.data for c in out if isinstance(c, cmd.SendClient))
    return upstream, client, out


# -- session: many exchanges on one connection ---------------------------------------------------------------


def test_every_exchange_on_a_kept_connection_is_injected_and_relayed_alike() -> None:
    s = _mitm_session()
    first = _exchange(s)
    for _ in range(5):
        again = _exchange(s)
        assert again[0] == first[0] and again[1] == first[1]
    assert b"Authorization: Bearer sk-real\r\n" in first[0] and b"dummy" not in first[0]
    assert first[1].endswith(b"\r\n\r\nhello")
    assert cmd.ReleaseUpstream(True) in first[2]


def test_exchanges_leave_no_reference_cycles_for_the_collector() -> None:
    s = _mitm_session()
    _exchange(s)
    gc.collect()
    gc.disable()
    try:
        for _ in range(50):
            _exchange(s)
        assert gc.collect() == 0  # a new parser per request was a cycle (and a collector pass every ~60)
    finally:
        gc.enable()


def test_a_different_host_header_is_still_checked_after_a_good_one() -> None:
    s = _mitm_session()
    _exchange(s)
    out = s.handle(ev.ClientData(b"GET / HTTP/1.1\r\nHost: other.test:8443\r\n\r\n"))
    assert any(isinstance(c, cmd.SendClient) and c.data.startswith(b"HTTP/1.1 421") for c in out)
    assert not any(isinstance(c, cmd.FetchSecret) for c in out)


# -- the reused response parser ----------------------------------------------------------------------------------


def test_reset_parser_parses_the_next_response_after_keep_alive_close_head_and_errors() -> None:
    p = ResponseParser()
    for first, method in [
        (RESPONSE, "GET"),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", "GET"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", "HEAD"),
        (b"HTTP/1.1 200 OK\r\n\r\nread until close", "GET"),  # cut short: the connection is not reused
    ]:
        p.reset()
        p.expect(method)
        p.feed(first)
        p.reset()
        p.expect("GET")
        events = p.feed(RESPONSE)
        assert isinstance(events[0], ResponseHead) and events[0].status == 200
        assert events[1:] == [Body(b"hello"), MessageEnd()]
    p.reset()
    p.expect("GET")
    with pytest.raises(FramingError):
        p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    p.reset()
    p.expect("GET")
    assert p.feed(RESPONSE)[1:] == [Body(b"hello"), MessageEnd()]


def test_reset_parser_still_refuses_bytes_after_a_complete_response() -> None:
    p = ResponseParser()
    p.expect("GET")
    events = p.feed(RESPONSE + b"HTTP/1.1 200 OK\r\n\r\n")
    assert events[-1] == MessageEnd() and not p.reusable
    p.reset()
    assert p.reusable


# -- one_line fast path, header value check, cached drop sets ----------------------------------------------------


def _one_line_reference(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    flat = flat.encode("ascii", "backslashreplace").decode("ascii")
    flat = "".join(c if c.isprintable() else "?" for c in flat)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@given(st.text(max_size=80))
def test_one_line_matches_the_reference(text: str) -> None:
    assert one_line(text, 40) == _one_line_reference(text, 40)


@given(st.text(max_size=40))
def test_field_value_check_matches_the_reference(value: str) -> None:
    expected = bool(value) and value == value.strip(" \t") and all(c == "\t" or " " <= c <= "~" for c in value)
    assert is_header_value(value) == expected
    assert (header_value_problem(value) is None) == expected


def test_cached_drop_set_still_strips_credentials_and_connection_named_headers() -> None:
    headers = [(b"Authorization", b"Bearer a"), (b"X-Keep", b"1"), (b"Connection", b"x-hop"), (b"X-Hop", b"2")]
    for _ in range(2):
        out = forward_request_headers(headers, host=b"api.test", body="none", content_length=None, route=API,
                                      injected=(b"Authorization", b"Bearer real"))
        assert out == [(b"Host", b"api.test"), (b"X-Keep", b"1"), (b"Authorization", b"Bearer real"), (b"Via", b"1.1 cordon")]
        plain = forward_request_headers(headers[:2], host=b"h", body="none", content_length=None)
        assert plain == [(b"Host", b"h"), (b"Authorization", b"Bearer a"), (b"X-Keep", b"1"), (b"Via", b"1.1 cordon")]


# -- logger batching ---------------------------------------------------------------------------------------------


def test_batched_log_lines_are_written_once_the_loop_turns_and_on_batch_off() -> None:
    stream = io.StringIO()
    logger = Logger("info", stream=stream)

    async def main() -> tuple[str, str]:
        logger.batch_on(asyncio.get_running_loop())
        logger.log("info", "one")
        logger.log("info", "two")
        before = stream.getvalue()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        after = stream.getvalue()
        logger.log("info", "three")
        logger.batch_on(None)
        return before, after

    before, after = asyncio.run(main())
    assert before == ""
    assert [line.split()[-1] for line in after.splitlines()] == ["one", "two"]
    assert stream.getvalue().splitlines()[-1].endswith("three")
    logger.log("info", "four")  # not batched any more: written at once
    assert stream.getvalue().splitlines()[-1].endswith("four")


# -- Deadline ----------------------------------------------------------------------------------------------------


def test_deadline_times_out_an_await_that_makes_no_progress() -> None:
    async def main() -> str:
        task = asyncio.current_task()
        assert task is not None
        deadline = Deadline(asyncio.get_running_loop())
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        deadline.arm(0.05, task)
        try:
            await asyncio.wait_for(never, 10)
        except asyncio.CancelledError:
            return "timeout" if deadline.expired(task) else "cancelled"
        finally:
            deadline.disarm(task)
            deadline.close()
        return "done"

    assert asyncio.run(main()) == "timeout"


def test_deadline_does_not_fire_for_awaits_that_complete_and_an_outside_cancel_stays_a_cancel() -> None:
    async def main() -> tuple[int, bool]:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        deadline = Deadline(loop)
        for _ in range(20):  # each await completes well within its deadline; the timer is re-armed, never fires
            deadline.arm(0.05, task)
            await asyncio.sleep(0.01)
            deadline.disarm(task)
        await asyncio.sleep(0.1)  # disarmed: the pending timer finds nothing to do

        async def victim() -> bool:
            me = asyncio.current_task()
            assert me is not None
            deadline.arm(10, me)
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                return deadline.expired(me)
            finally:
                deadline.disarm(me)
            return True

        t = loop.create_task(victim())
        await asyncio.sleep(0)
        t.cancel()
        expired = await t
        deadline.close()
        return task.cancelling(), expired

    assert asyncio.run(main()) == (0, False)


def test_a_new_secret_object_on_the_same_connection_is_injected_not_the_cached_header() -> None:
    class Rotated:
        def reveal(self) -> str:
            return "sk-rotated"

    s = _mitm_session()
    _exchange(s)
    s.handle(ev.ClientData(REQUEST))
    s.handle(ev.SecretReady(s.awaiting, Rotated()))
    up = s.handle(ev.UpstreamConnected(s.awaiting, True))
    sent = b"".join(c.data for c in up if isinstance(c, cmd.SendUpstream))
    assert b"Authorization: Bearer sk-rotated\r\n" in sent and b"sk-real" not in sent
