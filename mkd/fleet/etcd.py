"""An etcd v3 client over etcd's HTTP/JSON gateway (`/v3/...`, etcd 3.4), on httpx.

Why not a gRPC client: see README "Fleet" (the maintained asyncio one, aetcd, has neither TLS
nor more than one endpoint). The gateway is the same v3 API — ranges, transactions, leases,
watches — as JSON: keys and values base64, 64-bit integers as strings, zero values omitted.

Requests go to one endpoint at a time; a transport error moves to the next one, so a cluster
with a member down keeps answering. `EtcdUnavailable` means no endpoint answered within the
deadline (the fleet maps it to 503).
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx

Json = dict[str, Any]
CompareOp = Literal["=", "!=", "<", ">"]
_RESULT = {"=": "EQUAL", "!=": "NOT_EQUAL", "<": "LESS", ">": "GREATER"}
WATCH_RETRY_S = 0.2
UNAVAILABLE = 14  # gRPC's code for a member that cannot serve (stopping, or without quorum)


class EtcdUnavailable(Exception):
    """No endpoint answered (or the cluster refused for want of quorum) within the deadline."""


class EtcdError(Exception):
    """etcd answered with an error (a bad request, a lease not found, a compacted revision)."""


def exception_leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions an exception group holds (a task group's failures), or the one exception."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in exception_leaves(inner)]
    return [exc]


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: str) -> bytes:
    """The range end that selects every key starting with `prefix` (etcd's "prefix" rule)."""
    raw = bytearray(prefix.encode())
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int
    version: int
    lease: int

    def json(self) -> Any:
        return json.loads(self.value)

    @classmethod
    def of(cls, raw: Json) -> KeyValue:
        return cls(key=_unb64(raw.get("key")).decode(), value=_unb64(raw.get("value")),
                   mod_revision=int(raw.get("mod_revision", 0)), create_revision=int(raw.get("create_revision", 0)),
                   version=int(raw.get("version", 0)), lease=int(raw.get("lease", 0)))


@dataclass(frozen=True)
class WatchEvent:
    kind: Literal["put", "delete"]
    kv: KeyValue
    revision: int  # the revision of the watch response that carried it


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[Json]

    def ranges(self, index: int) -> list[KeyValue]:
        """The key-values of the `index`-th operation of the branch that ran (a range)."""
        found = self.responses[index].get("response_range", {})
        return [KeyValue.of(kv) for kv in found.get("kvs", [])]

    def count(self, index: int) -> int:
        """How many keys the `index`-th operation's range holds (all of them, not only those sent)."""
        return int(self.responses[index].get("response_range", {}).get("count", 0))


# -- operations and comparisons of a transaction (the gateway's RequestOp / Compare) ----------

def put_op(key: str, value: bytes | str, *, lease: int = 0) -> Json:
    body: Json = {"key": _b64(key), "value": _b64(value)}
    if lease:
        body["lease"] = str(lease)
    return {"request_put": body}


def delete_op(key: str, *, prefix: bool = False) -> Json:
    body: Json = {"key": _b64(key)}
    if prefix:
        body["range_end"] = _b64(prefix_end(key))
    return {"request_delete_range": body}


def range_op(key: str, *, prefix: bool = False, min_mod_revision: int = 0, count_only: bool = False) -> Json:
    """A range read; `min_mod_revision` keeps only keys changed since, `count_only` counts."""
    body: Json = {"key": _b64(key)}
    if prefix:
        body["range_end"] = _b64(prefix_end(key))
    if min_mod_revision:
        body["min_mod_revision"] = str(min_mod_revision)
    if count_only:
        body["count_only"] = True
    return {"request_range": body}


def mod_is(key: str, op: CompareOp, revision: int) -> Json:
    """Compare the key's last modification revision (0: the key does not exist)."""
    return {"key": _b64(key), "target": "MOD", "result": _RESULT[op], "mod_revision": str(revision)}


def version_is(key: str, op: CompareOp, version: int) -> Json:
    return {"key": _b64(key), "target": "VERSION", "result": _RESULT[op], "version": str(version)}


def value_is(key: str, op: CompareOp, value: bytes | str) -> Json:
    return {"key": _b64(key), "target": "VALUE", "result": _RESULT[op], "value": _b64(value)}


def lease_is(key: str, op: CompareOp, lease: int) -> Json:
    return {"key": _b64(key), "target": "LEASE", "result": _RESULT[op], "lease": str(lease)}


@dataclass(frozen=True)
class EtcdTls:
    cert: Path | None
    key: Path | None
    ca: Path | None

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if self.cert is not None:
            context.load_cert_chain(str(self.cert), str(self.key) if self.key else None)
        return context


class EtcdClient:
    """The v3 calls the fleet uses, each bounded by `timeout_s` across every endpoint."""

    def __init__(self, endpoints: Sequence[str], *, timeout_s: float, tls: EtcdTls | None = None,
                 observe_round_trip: Callable[[float], None] | None = None) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint")
        self._endpoints = list(endpoints)
        self._current = 0
        self.timeout_s = timeout_s
        verify: ssl.SSLContext | bool = tls.context() if tls is not None else True
        self._http = httpx.AsyncClient(verify=verify, timeout=httpx.Timeout(timeout_s),
                                       limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))
        self.observe_round_trip = observe_round_trip
        self.requests = 0  # calls made, for the bench's traffic figure
        self.bytes_sent = 0
        self.bytes_received = 0

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, path: str, body: Json) -> Json:
        deadline = time.monotonic() + self.timeout_s
        last: str = "no endpoint tried"
        attempts = 0
        while True:
            endpoint = self._endpoints[self._current]
            left = deadline - time.monotonic()
            if left <= 0 or (attempts >= len(self._endpoints) and left < 0.05):
                raise EtcdUnavailable(f"etcd did not answer within {self.timeout_s:g} s ({last})")
            attempts += 1
            payload = json.dumps(body).encode()
            sent_at = time.monotonic()
            try:
                response = await self._http.post(f"{endpoint}{path}", content=payload,
                                                 headers={"content-type": "application/json"},
                                                 timeout=httpx.Timeout(max(left, 0.05)))
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                last = f"{endpoint}: {type(exc).__name__}"
                self._current = (self._current + 1) % len(self._endpoints)
                if attempts % len(self._endpoints) == 0:
                    await anyio.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
                continue
            if self.observe_round_trip is not None:
                self.observe_round_trip(time.monotonic() - sent_at)
            self.requests += 1
            self.bytes_sent += len(payload)
            self.bytes_received += len(response.content)
            answer: Json = response.json() if response.content else {}
            if response.status_code == 200:
                return answer
            message = str(answer.get("error") or answer.get("message") or response.text)
            if response.status_code >= 500 and ("leader" in message or "timed out" in message
                                                or "unavailable" in message.lower()):
                # A member without quorum or leader: another member may have both.
                last = f"{endpoint}: {message}"
                self._current = (self._current + 1) % len(self._endpoints)
                await anyio.sleep(min(0.05, max(deadline - time.monotonic(), 0)))
                continue
            raise EtcdError(f"etcd {path}: {message}")

    # -- key-values ------------------------------------------------------------------------------
    async def get(self, key: str) -> KeyValue | None:
        found, _ = await self.range(key)
        return found[0] if found else None

    async def range(self, key: str, *, prefix: bool = False, revision: int = 0) -> tuple[list[KeyValue], int]:
        """The key (or every key under the prefix) and the store's revision of the read."""
        body: Json = {"key": _b64(key)}
        if prefix:
            body["range_end"] = _b64(prefix_end(key))
        if revision:
            body["revision"] = str(revision)
        answer = await self._call("/v3/kv/range", body)
        return [KeyValue.of(kv) for kv in answer.get("kvs", [])], int(answer["header"]["revision"])

    async def put(self, key: str, value: bytes | str, *, lease: int = 0) -> int:
        body = put_op(key, value, lease=lease)["request_put"]
        answer = await self._call("/v3/kv/put", body)
        return int(answer["header"]["revision"])

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        body = delete_op(key, prefix=prefix)["request_delete_range"]
        answer = await self._call("/v3/kv/deleterange", body)
        return int(answer.get("deleted", 0))

    async def txn(self, compare: list[Json], success: list[Json], failure: list[Json] | None = None) -> TxnResult:
        answer = await self._call("/v3/kv/txn", {"compare": compare, "success": success, "failure": failure or []})
        return TxnResult(succeeded=bool(answer.get("succeeded", False)), revision=int(answer["header"]["revision"]),
                         responses=list(answer.get("responses", [])))

    # -- leases ----------------------------------------------------------------------------------
    async def grant(self, ttl_s: int) -> int:
        answer = await self._call("/v3/lease/grant", {"TTL": str(ttl_s)})
        if answer.get("error"):
            raise EtcdError(f"lease grant: {answer['error']}")
        return int(answer["ID"])

    async def keepalive(self, lease: int) -> int:
        """Renew the lease once; its remaining TTL, 0 when it has expired."""
        answer = await self._call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(answer.get("result", {}).get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        try:
            await self._call("/v3/lease/revoke", {"ID": str(lease)})
        except EtcdError as exc:
            if "not found" not in str(exc):
                raise

    async def follow(self, prefixes: Sequence[str], *, start_revision: int,
                     on_batch: Callable[[list[WatchEvent]], None], no_puts: bool = False) -> None:
        """Watch several prefixes at once (one stream each, so a node is sent only what it
        asked for); `on_batch` sees each key's changes in order, prefixes interleaved."""

        async def pump(prefix: str) -> None:
            async for batch in self.watch(prefix, prefix=True, start_revision=start_revision, no_puts=no_puts):
                on_batch(batch)

        async with anyio.create_task_group() as tasks:
            for prefix in prefixes:
                tasks.start_soon(pump, prefix)

    # -- watches ---------------------------------------------------------------------------------
    async def watch(self, key: str, *, prefix: bool = False, start_revision: int,
                    no_puts: bool = False) -> AsyncIterator[list[WatchEvent]]:
        """Every change to the key (or prefix) from `start_revision` on (deletes only with
        `no_puts`), a batch per response; a broken stream resumes on the next endpoint from the
        revision after the last seen."""
        next_revision = start_revision
        while True:
            request: Json = {"key": _b64(key), "start_revision": str(next_revision)}
            if prefix:
                request["range_end"] = _b64(prefix_end(key))
            if no_puts:
                request["filters"] = ["NOPUT"]
            endpoint = self._endpoints[self._current]
            try:
                async with self._http.stream("POST", f"{endpoint}/v3/watch", json={"create_request": request},
                                             timeout=httpx.Timeout(self.timeout_s, read=None)) as response:
                    async for line in response.aiter_lines():
                        if not line.strip():
                            continue
                        self.bytes_received += len(line)
                        message = json.loads(line)
                        if "error" in message:
                            error = message["error"]
                            if isinstance(error, dict) and (error.get("grpc_code") == UNAVAILABLE
                                                            or error.get("http_code") == 503):
                                # the member is going away ("transport is closing"): resume on the next
                                raise httpx.RemoteProtocolError(f"watch: {error.get('message')}")
                            raise EtcdError(f"watch: {error}")
                        result = message.get("result", {})
                        if int(result.get("compact_revision", 0)):
                            raise EtcdError(f"watch from revision {next_revision}: compacted "
                                            f"(oldest {result['compact_revision']})")
                        revision = int(result.get("header", {}).get("revision", 0))
                        events = [WatchEvent("delete" if event.get("type") == "DELETE" else "put",
                                             KeyValue.of(event["kv"]), revision)
                                  for event in result.get("events", [])]
                        if events:
                            next_revision = max(e.kv.mod_revision for e in events) + 1
                            yield events
            except (httpx.TransportError, httpx.TimeoutException):
                self._current = (self._current + 1) % len(self._endpoints)
            await anyio.sleep(WATCH_RETRY_S)
