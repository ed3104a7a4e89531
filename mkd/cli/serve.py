"""`mkd serve`: bind the sockets the settings ask for, refusing unsafe binds, and run uvicorn."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from pathlib import Path

import uvicorn

from mkd.bounded_http import bounded_protocol, raise_open_files_limit
from mkd.cli.socket_activation import describe, inherited_sockets
from mkd.config import Settings
from mkd.errors import InvalidInput
from mkd.malloc_tuning import tune_malloc


class UnsafeBind(Exception):
    """The settings ask for something the daemon refuses to do (message says why)."""


class StartupFailed(Exception):
    """Migrations, the backend or the reconciliation failed after the server started listening."""


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UnsafeBind(f"--listen {listen!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings) -> None:
    """DESIGN "Security": any bind beyond loopback needs a tokens file."""
    listen = settings.daemon.listen
    if listen is None:
        return
    host, _ = split_listen(listen)
    if is_loopback(host):
        return
    tokens = settings.daemon.tokens_file
    if tokens is None or not Path(tokens).is_file():
        raise UnsafeBind(
            f"refusing to listen on {listen}: binding beyond loopback needs a tokens file "
            "([daemon] tokens_file, lines 'name:role:token'); use 127.0.0.1 or --socket otherwise"
        )


def check_inherited(settings: Settings, sockets: list[socket.socket]) -> None:
    """The rule of check_bind for sockets systemd passed: beyond loopback needs a tokens file."""
    for sock in sockets:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = sock.getsockname()[0]
            tokens = settings.daemon.tokens_file
            if not is_loopback(host) and (tokens is None or not Path(tokens).is_file()):
                raise UnsafeBind(f"refusing the socket systemd passed on {describe(sock)}: beyond loopback "
                                 "needs a tokens file ([daemon] tokens_file, lines 'name:role:token')")


def show_daemon_log(level: str) -> None:
    """The daemon's own messages (start-up, reconciliation, kernel warnings) on stderr beside
    uvicorn's; without a handler Python would drop everything below WARNING."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)-9s %(name)s: %(message)s"))
    logger = logging.getLogger("mkd")
    logger.addHandler(handler)
    logger.setLevel("DEBUG" if level == "trace" else level.upper())  # trace is uvicorn's own
    logger.propagate = False


_SUN_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path), with its NUL


def bind_sockets(settings: Settings) -> tuple[list[socket.socket], list[str]]:
    sockets: list[socket.socket] = []
    urls: list[str] = []
    path = settings.unix_socket_path
    if path is not None:
        if len(os.fsencode(path)) >= _SUN_PATH_MAX:
            raise InvalidInput(f"unix socket path {path} is longer than the kernel's {_SUN_PATH_MAX - 1} bytes: "
                             "set [daemon] socket (--socket) to a shorter path, or unix_socket = false")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_socket():
            path.unlink()
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(str(path))
        os.chmod(path, 0o660)
        sockets.append(unix)
        urls.append(f"unix:{path}")
    if settings.daemon.listen is not None:
        host, port = split_listen(settings.daemon.listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets it knows are TCP, and without
        # it every keep-alive response waits ~40 ms for the client's delayed ACK.
        tcp = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((host, port))
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        urls.append(f"http://{shown}:{tcp.getsockname()[1]}/")
        sockets.append(tcp)
    if not sockets:
        raise UnsafeBind("nothing to listen on: set [daemon] listen or socket")
    return sockets, urls


def run(settings: Settings, *, announce: bool = True) -> None:
    from mkd.app import create_app

    sockets = inherited_sockets()  # socket activation (deploy/mkd.socket): systemd's sockets replace our binds
    if sockets:
        check_inherited(settings, sockets)
        urls = [describe(sock) for sock in sockets]
    else:
        check_bind(settings)
        sockets, urls = bind_sockets(settings)
    if announce:
        for url in urls:
            print(f"mkd: dashboard and API at {url}", flush=True)  # noqa: T201
    tune_malloc()  # uploads: see mkd.malloc_tuning
    open_files = raise_open_files_limit()  # DESIGN "Limits": before any socket is accepted
    show_daemon_log(settings.daemon.log_level)
    failures: list[BaseException] = []
    servers: list[uvicorn.Server] = []

    def start_failed(error: BaseException) -> None:
        failures.append(error)
        for server in servers:
            server.should_exit = True

    # Start-up runs once the sockets listen, so /healthz and /readyz (503 "starting") answer.
    app = create_app(settings, on_start_failure=start_failed)
    # loop="auto" takes uvloop (a dependency): it reads the socket with less per-read overhead.
    # DESIGN "Limits": uvicorn's own protocol cannot time out headers nor answer past a connection
    # cap the way DESIGN asks; mkd.bounded_http says why and adds it (limit_concurrency stays off).
    limits = settings.limits
    protocol = bounded_protocol(limits, app.state.limit_refusals, open_files)
    config = uvicorn.Config(app, log_level=settings.daemon.log_level, lifespan="on",
                            loop="auto", http=protocol, timeout_graceful_shutdown=5,
                            timeout_keep_alive=limits.keepalive_timeout_s,  # type: ignore[arg-type]
                            proxy_headers=False)
    servers.append(uvicorn.Server(config))
    servers[0].run(sockets=sockets)
    if failures:
        raise StartupFailed(f"start-up failed: {failures[0]}")
