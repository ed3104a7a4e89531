"""Many SSE subscribers to /v1/events in one process (asyncio, raw sockets: the parsing must cost
less than what it measures). Run as `python -m tests.bench.sse_subscribers HOST PORT COUNT OUT`:
prints "ready" once every stream has its response headers, then records each event's id and the
wall-clock time it arrived until stdin closes, and writes {"streams": [[[id, unix_time], ...], ...]}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


async def subscribe(host: str, port: int, received: list[tuple[int, float]], connected: asyncio.Event,
                    stop: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"/v1/events answered {head[:200]!r}")
    connected.set()
    pending = b""
    while not stop.is_set():
        read = asyncio.ensure_future(reader.read(65536))
        stopped = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if read not in done:
            read.cancel()
            break
        stopped.cancel()
        chunk = read.result()
        if not chunk:
            raise RuntimeError("the daemon closed an event stream")
        now = time.time()
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        # Chunked transfer framing shows up as lines of hex digits: only `id:` lines count.
        for line in lines:
            if line.startswith(b"id:"):
                received.append((int(line[3:].strip()), now))
    writer.close()


async def main(host: str, port: int, count: int, out: str) -> None:
    stop = asyncio.Event()
    streams: list[list[tuple[int, float]]] = [[] for _ in range(count)]
    flags = [asyncio.Event() for _ in range(count)]
    tasks = [asyncio.ensure_future(subscribe(host, port, streams[i], flags[i], stop)) for i in range(count)]
    await asyncio.wait_for(asyncio.gather(*(flag.wait() for flag in flags)), timeout=120)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # the bench closes stdin when the writer is done
    stop.set()
    await asyncio.gather(*tasks)
    with open(out, "w") as fh:
        json.dump({"streams": streams}, fh)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
