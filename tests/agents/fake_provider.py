"""A local fake of the provider APIs the real agent CLIs call, for the tests in this directory.

One TLS listener (its own CA, a certificate for every provider host) answers, by path:

* OpenAI Responses: ``POST /v1/responses`` (SSE) and ``GET /v1/responses`` upgraded to a WebSocket (Codex's
  preferred transport: one ``response.create`` JSON text frame in, the same event objects as the SSE stream out,
  one text frame each, ending with ``response.completed``);
* OpenAI Chat Completions: ``POST /v1/chat/completions`` (streamed or not);
* Anthropic Messages: ``POST /v1/messages`` (streamed or not) and ``/v1/messages/count_tokens``;
* Gemini: ``POST /v1beta/models/<model>:generateContent`` and ``:streamGenerateContent?alt=sse``;
* ``GET /v1/models``-style listings, so clients that look a model up find one.

Every reply carries :data:`REPLY`. Each request is recorded (host, method, path, transport, and for every place
a key can travel — ``Authorization``, ``x-api-key``, ``x-goog-api-key``, ``api-key``, ``?key=`` — whether it held
the real key, the dummy or something else); the recording never holds a key value, so it can be written to disk.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import ssl
import struct
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

REPLY = "Cordon fake provider says: the answer is 42."
HOSTS = ("api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com")
KEY_HEADERS = ("authorization", "x-api-key", "x-goog-api-key", "api-key")
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 65536


@dataclass
class Record:
    """One request (or one WebSocket message) as the fake received it."""

    host: str
    method: str
    path: str
    transport: str  # "http" | "websocket" (the upgrade) | "websocket-message"
    keys: dict[str, str] = field(default_factory=dict)  # where -> "real" | "dummy" | "other" | "empty"
    detail: dict[str, Any] = field(default_factory=dict)


class Classifier:
    """Says whether a credential value is the real key, the dummy or something else (never stores values)."""

    def __init__(self, real: str, dummy: str) -> None:
        self._real = hashlib.sha256(real.encode()).digest()
        self._dummy = hashlib.sha256(dummy.encode()).digest()

    def __call__(self, value: str) -> str:
        value = value.strip()
        for scheme in ("Bearer ", "bearer ", "Basic "):
            if value.startswith(scheme):
                value = value[len(scheme) :].strip()
        if not value:
            return "empty"
        digest = hashlib.sha256(value.encode()).digest()
        if digest == self._real:
            return "real"
        return "dummy" if digest == self._dummy else "other"


class FakeProvider:
    """The fake's state: the recording, and what to answer."""

    def __init__(self, classify: Classifier, *, reply: str = REPLY) -> None:
        self.classify = classify
        self.reply = reply
        self.records: list[Record] = []
        self.counter = 0

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}_{self.counter:04d}"

    def keys_of(self, headers: dict[str, str], query: dict[str, str]) -> dict[str, str]:
        found = {name: self.classify(headers[name]) for name in KEY_HEADERS if name in headers}
        if "key" in query:
            found["query:key"] = self.classify(query["key"])
        return found

    # ---- HTTP ----------------------------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await read_request(reader)
                if request is None:
                    return
                method, target, headers, body = request
                if headers.get("upgrade", "").lower() == "websocket":
                    await self.websocket(reader, writer, method, target, headers)
                    return
                keep = await self.respond(writer, method, target, headers, body)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, ValueError):
            return
        finally:
            writer.close()

    async def respond(
        self, writer: asyncio.StreamWriter, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> bool:
        parts = urlsplit(target)
        path = parts.path
        query = dict(parse_qsl(parts.query))
        host = headers.get("host", "").split(":")[0]
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            payload = {}
        record = Record(host, method, path, "http", self.keys_of(headers, query))
        record.detail = {"stream": bool(payload.get("stream")) if isinstance(payload, dict) else False}
        if "alt" in query:
            record.detail["alt"] = query["alt"]
        self.records.append(record)
        if not isinstance(payload, dict):
            payload = {}
        if method == "POST" and path.endswith("/responses"):
            await send_sse(writer, [(e["type"], e) for e in self.responses_events(payload)])
        elif method == "POST" and path.endswith("/chat/completions"):
            if payload.get("stream"):
                await send_sse(writer, [(None, c) for c in self.chat_chunks(payload)] + [(None, "[DONE]")])
            else:
                await send_json(writer, 200, self.chat_completion(payload))
        elif method == "POST" and path.endswith("/messages/count_tokens"):
            await send_json(writer, 200, {"input_tokens": 12})
        elif method == "POST" and path.endswith("/messages"):
            if payload.get("stream"):
                await send_sse(writer, [(e["type"], e) for e in self.anthropic_events(payload)])
            else:
                await send_json(writer, 200, self.anthropic_message(payload))
        elif method == "POST" and ":streamGenerateContent" in path:
            await send_sse(writer, [(None, self.gemini_response(payload))], crlf=True)
        elif method == "POST" and ":generateContent" in path:
            await send_json(writer, 200, self.gemini_response(payload))
        elif method == "POST" and ":countTokens" in path:
            await send_json(writer, 200, {"totalTokens": 12})
        elif method == "GET" and path.rstrip("/").endswith("/models"):
            await send_json(writer, 200, self.model_list(host))
        else:
            record.detail["unhandled"] = True
            await send_json(writer, 404, {"error": {"message": f"fake provider: no {method} {path}"}})
        return headers.get("connection", "").lower() != "close"

    # ---- WebSocket (OpenAI Responses) -----------------------------------------------------------------

    async def websocket(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        target: str,
        headers: dict[str, str],
    ) -> None:
        parts = urlsplit(target)
        host = headers.get("host", "").split(":")[0]
        record = Record(host, method, parts.path, "websocket", self.keys_of(headers, dict(parse_qsl(parts.query))))
        record.detail = {
            "beta": headers.get("openai-beta", ""),
            "extensions_offered": headers.get("sec-websocket-extensions", ""),
        }
        self.records.append(record)
        key = headers.get("sec-websocket-key", "")
        if method != "GET" or not parts.path.endswith("/responses") or not key:
            await send_json(writer, 404, {"error": {"message": "fake provider: no such websocket"}})
            return
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        while True:
            frame = await read_frame(reader)
            if frame is None:
                return
            opcode, data = frame
            if opcode == 0x8:  # close: answer it and stop
                writer.write(encode_frame(0x8, data[:2]))
                await writer.drain()
                return
            if opcode == 0x9:
                writer.write(encode_frame(0xA, data))
                await writer.drain()
                continue
            if opcode != 0x1:
                continue
            message = json.loads(data)
            self.records.append(
                Record(host, "WS", parts.path, "websocket-message", dict(record.keys),
                       {"type": message.get("type"), "generate": message.get("generate", True),
                        "previous_response_id": bool(message.get("previous_response_id"))})
            )
            if message.get("type") != "response.create":
                continue
            if message.get("generate", True) is False:
                events = self.responses_events(message, text=None)
            else:
                events = self.responses_events(message)
            for event in events:
                writer.write(encode_frame(0x1, json.dumps(event).encode()))
            await writer.drain()

    # ---- bodies ------------------------------------------------------------------------------------------

    def responses_events(self, request: dict[str, Any], text: str | None = "") -> list[dict[str, Any]]:
        """The event sequence of one Responses turn (``text`` None: a warm-up with no output)."""
        text = self.reply if text == "" else text
        rid, mid = self.next_id("resp"), self.next_id("msg")
        model = request.get("model") or "gpt-5"
        created = int(time.time())
        base = {"id": rid, "object": "response", "created_at": created, "model": model, "status": "in_progress",
                "output": [], "parallel_tool_calls": False, "tool_choice": "auto", "tools": []}
        usage = {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 9,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 21}
        events: list[dict[str, Any]] = [{"type": "response.created", "sequence_number": 0, "response": base}]
        output: list[dict[str, Any]] = []
        if text is not None:
            part = {"type": "output_text", "text": text, "annotations": []}
            item = {"id": mid, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
            output = [item]
            where = {"item_id": mid, "output_index": 0, "content_index": 0}
            events += [
                {"type": "response.output_item.added", "output_index": 0,
                 "item": {**item, "status": "in_progress", "content": []}},
                {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
                {"type": "response.output_text.delta", **where, "delta": text},
                {"type": "response.output_text.done", **where, "text": text},
                {"type": "response.content_part.done", **where, "part": part},
                {"type": "response.output_item.done", "output_index": 0, "item": item},
            ]
        done = {**base, "status": "completed", "output": output, "usage": usage}
        events.append({"type": "response.completed", "response": done})
        for number, event in enumerate(events):
            event["sequence_number"] = number
        return events

    def chat_chunks(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        cid, model, created = self.next_id("chatcmpl"), request.get("model") or "gpt-4o", int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        last = chunk({}, "stop")
        last["usage"] = {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}
        return [chunk({"role": "assistant", "content": ""}, None), chunk({"content": self.reply}, None), last]

    def chat_completion(self, request: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.next_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()),
            "model": request.get("model") or "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self.reply},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
        }

    def anthropic_message(self, request: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.next_id("msg"), "type": "message", "role": "assistant",
            "model": request.get("model") or "claude-sonnet-4-5",
            "content": [{"type": "text", "text": self.reply}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 9, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0},
        }

    def anthropic_events(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        message = self.anthropic_message(request)
        start = {**message, "content": [], "stop_reason": None, "usage": {**message["usage"], "output_tokens": 1}}
        return [
            {"type": "message_start", "message": start},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": self.reply}},
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
             "usage": {"output_tokens": 9}},
            {"type": "message_stop"},
        ]

    def gemini_response(self, request: dict[str, Any]) -> dict[str, Any]:
        config = request.get("generationConfig") or {}
        text = self.reply
        if config.get("responseMimeType") == "application/json":  # Gemini CLI's routing classifier
            schema = config.get("responseJsonSchema") or config.get("responseSchema") or {}
            text = json.dumps(example_of(schema))
        return {
            "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP",
                            "index": 0}],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 9, "totalTokenCount": 21},
            "modelVersion": "gemini-2.5-flash",
        }

    def model_list(self, host: str) -> dict[str, Any]:
        if host == "generativelanguage.googleapis.com":
            return {"models": [{"name": "models/gemini-2.5-flash", "supportedGenerationMethods":
                                ["generateContent", "streamGenerateContent"]}]}
        if host == "api.anthropic.com":
            return {"data": [{"id": "claude-sonnet-4-5", "type": "model", "display_name": "Claude",
                              "created_at": "2025-01-01T00:00:00Z"}], "has_more": False,
                    "first_id": "claude-sonnet-4-5", "last_id": "claude-sonnet-4-5"}
        return {"object": "list", "data": [{"id": "gpt-4o", "object": "model", "created": 0,
                                            "owned_by": "openai"}]}


def example_of(schema: dict[str, Any]) -> Any:
    """A small value that satisfies a JSON schema (for JSON-mode requests: a routing classifier's answer)."""
    kind = str(schema.get("type", "object")).lower()
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: example_of(sub) for name, sub in props.items()}
    if kind == "array":
        return [example_of(schema.get("items") or {"type": "string"})]
    if kind in ("number", "integer"):
        return max(10, int(schema.get("minimum", 10)))
    if kind == "boolean":
        return False
    return "a short factual question"


# ---- wire helpers ----------------------------------------------------------------------------------------


async def read_request(
    reader: asyncio.StreamReader,
) -> tuple[str, str, dict[str, str], bytes] | None:
    """One HTTP/1.1 request (method, target, lower-cased headers, body), or None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise ValueError("request head too large") from None
    if len(head) > MAX_HEAD:
        raise ValueError("request head too large")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass
                break
            chunks.append(await reader.readexactly(size))
            await reader.readline()
        body = b"".join(chunks)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
    return method, target, headers, body


async def send_json(writer: asyncio.StreamWriter, status: int, body: Any) -> None:
    data = json.dumps(body).encode()
    reason = {200: "OK", 404: "Not Found"}.get(status, "Status")
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    await writer.drain()


async def send_sse(
    writer: asyncio.StreamWriter, events: list[tuple[str | None, Any]], *, crlf: bool = False
) -> None:
    """A chunked ``text/event-stream``, one chunk per event (``data: [DONE]`` for a literal string)."""
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    end = "\r\n\r\n" if crlf else "\n\n"
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data)
        event = (f"event: {name}\n" if name else "") + f"data: {text}{end}"
        raw = event.encode()
        writer.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes] | None:
    """One complete client message (fragments joined): (opcode, payload), or None at EOF."""
    opcode = None
    payload = b""
    while True:
        try:
            first, second = await reader.readexactly(2)
        except asyncio.IncompleteReadError:
            return None
        fin, op = first & 0x80, first & 0x0F
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await reader.readexactly(8))
        mask = await reader.readexactly(4) if second & 0x80 else b"\0\0\0\0"
        data = bytearray(await reader.readexactly(length))
        for i in range(len(data)):
            data[i] ^= mask[i % 4]
        if op >= 0x8:  # control frames are never fragmented and may interleave
            return op, bytes(data)
        if op != 0:
            opcode = op
        payload += bytes(data)
        if fin:
            return (opcode or 0x1), payload


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked server frame."""
    head = bytes([0x80 | opcode])
    if len(payload) < 126:
        head += bytes([len(payload)])
    elif len(payload) < 65536:
        head += bytes([126]) + struct.pack("!H", len(payload))
    else:
        head += bytes([127]) + struct.pack("!Q", len(payload))
    return head + payload


async def serve(
    provider: FakeProvider, cert_file: str, key_file: str, *, host: str = "127.0.0.1", port: int = 443
) -> asyncio.Server:
    """Listen with TLS (HTTP/1.1 only) and hand every connection to ``provider``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["http/1.1"])
    return await asyncio.start_server(provider.handle, host, port, ssl=context, limit=MAX_HEAD * 4)


def dump_records(records: list[Record], path: str | os.PathLike[str]) -> None:
    """Write the recording as JSON (no key values are in it)."""
    data = [{"host": r.host, "method": r.method, "path": r.path, "transport": r.transport, "keys": r.keys,
             "detail": r.detail} for r in records]
    with open(path, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=1)

