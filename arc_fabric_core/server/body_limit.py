"""Refuse an HTTP request body over a size, before it is read into memory.

Every request the API takes is a small JSON document: the largest, a generation, holds
two prompts of at most 10,240 characters each (at most 12 bytes a character in JSON's
\\u escapes: 240 KiB), a timesteps list of at most 1000 numbers and a schedule config;
1 MiB is four times that (LongLive's prompt list fits about a hundred plain-text prompts
of full length). A declared ``Content-Length`` over the limit is refused unread; a body
without one (chunked) is counted as it arrives and refused once it passes the limit, so
no more than the limit is ever held. Other connections (WebSocket, lifespan) pass
through untouched.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 1024 * 1024


class BodyLimit:
    """ASGI middleware: 413 with ``{"field": null, "message": ...}`` for a body over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, f"declares {declared} bytes")
            return
        # Read the body here, at most max_bytes of it, then hand it on as it came.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # a disconnect: the app hears it as it would have
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(send, f"passed {self.max_bytes} bytes and was not read further")
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, what: str) -> None:
        mib = self.max_bytes / (1024 * 1024)
        body = json.dumps(
            {"field": None, "message": f"request body too large: it {what}; at most {mib:g} MiB is accepted"}
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        # The rest of the body is never read: the client is told to open a new connection.
        headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length itself; the count still holds
    return None


__all__ = ["MAX_BODY_BYTES", "BodyLimit"]
