"""GETs answered again with the bytes their route gave, while nothing they show has changed
(issue 15: reads cost close to nothing).

The innermost middleware: every other one (audit, auth, cross-site guard, limits, idempotency,
metrics, conditional GET) still runs for a replayed request, and only FastAPI's routing,
dependencies and query validation are skipped. The first request for a path and query runs the
route as usual; a 200 from one of the routes given is kept under the generation it was computed at
and replayed, headers and body byte for byte, until the generation moves. One place decides
freshness: the read model's generation counts every commit that wrote an instance, declared or
pool row (mkd.services.read_model), which is all a read-model route's body shows, so a commit
makes the next request run its route again. A route whose body never changes while the daemon
runs (the host, the liveness probe) is replayed whatever the generation.

Only responses that depend on the path and query alone may be given here (no request header, no
token): the middlewares outside answer for those.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BYTES = 64 << 20  # bodies kept at most (query strings are the client's); the oldest go first
CONSTANT = -1  # the generation of a reply whose route's body never changes while the daemon runs


@dataclass(frozen=True)
class _Reply:
    generation: int
    route: Any  # what the router put in scope["route"]: the metrics name the route template
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class ReadReplay:
    def __init__(self, app: ASGIApp, *, generation: Callable[[Scope], int | None],
                 read_model_endpoints: Collection[Callable[..., Any]],
                 constant_endpoints: Collection[Callable[..., Any]]) -> None:
        """`generation(scope)`: the read model's generation; None while the daemon is not ready
        (starting or shutting down), when nothing is replayed."""
        self.app = app
        self.generation = generation
        self.read_model_endpoints = frozenset(read_model_endpoints)
        self.constant_endpoints = frozenset(constant_endpoints)
        self._replies: OrderedDict[tuple[str, bytes], _Reply] = OrderedDict()
        self._bytes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        key = (scope["path"], scope["query_string"])
        generation = self.generation(scope)
        reply = self._replies.get(key)
        if reply is not None and generation is not None and reply.generation in (CONSTANT, generation):
            scope["route"] = reply.route
            await send({"type": "http.response.start", "status": reply.status, "headers": list(reply.headers)})
            await send({"type": "http.response.body", "body": reply.body})
            return
        messages: list[Message] = []

        async def keep(message: Message) -> None:
            if len(messages) < 3:  # a start and one body, or more: a stream is never kept
                messages.append(message)
            await send(message)

        await self.app(scope, receive, keep)
        if generation is not None:
            self._keep(key, scope, generation, messages)

    def _keep(self, key: tuple[str, bytes], scope: Scope, generation: int, messages: list[Message]) -> None:
        if len(messages) != 2:
            return
        start, body = messages
        if start["type"] != "http.response.start" or start["status"] != 200 or body["type"] != "http.response.body" \
                or body.get("more_body", False):
            return
        route = scope.get("route")
        endpoint = getattr(route, "endpoint", None)
        if endpoint in self.constant_endpoints:
            generation = CONSTANT
        elif endpoint not in self.read_model_endpoints:
            return
        reply = _Reply(generation, route, 200, list(start.get("headers", [])), bytes(body.get("body", b"")))
        old = self._replies.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body)
        self._replies[key] = reply
        self._bytes += len(reply.body)
        while self._bytes > MAX_BYTES and self._replies:
            _, dropped = self._replies.popitem(last=False)
            self._bytes -= len(dropped.body)
