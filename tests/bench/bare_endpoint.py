"""A bare FastAPI app that answers one route with pre-serialised bytes: the floor a real endpoint
is compared against (DESIGN "Testing notes": same bytes as the real one).

Run as a subprocess (`python -m tests.bench.bare_endpoint PORT METHOD PATH STATUS BODY_FILE`) so it
has its own interpreter and GIL, like the daemon, instead of sharing the benchmark client's.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response

from mkd.malloc_tuning import tune_malloc
from mkd.testing.daemon_process import free_port


def build_app(method: str, path: str, status: int, body: bytes) -> FastAPI:
    app = FastAPI()

    async def serve_bytes(request: Request) -> Response:
        # Read the request like the real endpoint must (streamed: uploads can be 1 GiB), then answer.
        async for _ in request.stream():
            pass
        return Response(content=body, status_code=status, media_type="application/json")

    app.add_api_route(path, serve_bytes, methods=[method])
    app.add_api_route("/healthz", lambda: {"status": "ok"}, methods=["GET"])
    return app


@contextmanager
def bare_endpoint(workdir: Path, *, method: str, path: str, status: int, body: bytes, host: str = "127.0.0.1",
                  wrapper: list[str] | None = None) -> Iterator[str]:
    """Start the bare app on a free loopback port (or `host`, inside a namespace with `wrapper`,
    like tests.bench.bench_reads' token run); yields its base URL."""
    body_file = workdir / "bare-body.json"
    body_file.write_bytes(body)
    port = free_port()
    cmd = [*(wrapper or []), sys.executable, "-m", "tests.bench.bare_endpoint", str(port), method, path, str(status),
           str(body_file), host]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"bare endpoint exited with {proc.returncode}")
            try:
                if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        body_file.unlink(missing_ok=True)


def main(argv: list[str]) -> None:
    port, method, path, status, body_file, *rest = argv
    host = rest[0] if rest else "127.0.0.1"
    app = build_app(method, path, int(status), Path(body_file).read_bytes())
    # Same server, event loop, HTTP implementation, allocator settings and log level as
    # `mkd serve`, so only the app differs.
    tune_malloc()
    uvicorn.run(app, host=host, port=int(port), log_level="info", loop="auto", http="httptools")


if __name__ == "__main__":
    main(sys.argv[1:])
