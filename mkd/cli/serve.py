"""`mkd serve`: bind the sockets the settings ask for, refusing unsafe binds, and run uvicorn."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import socket
import ssl
from pathlib import Path
from typing import Any

import uvicorn

from mkd.bounded_http import bounded_protocol, raise_open_files_limit
from mkd.cli.socket_activation import describe, inherited_sockets
from mkd.config import Settings
from mkd.errors import InvalidInput
from mkd.gc_tuning import tune_gc
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


def check_transport(settings: Settings) -> None:
    """DESIGN "Security": beyond loopback the listener is TLS unless `insecure_plaintext = true`."""
    listen = settings.daemon.listen
    if listen is None or is_loopback(split_listen(listen)[0]):
        return
    if settings.daemon.tls_cert is None and not settings.daemon.insecure_plaintext:
        raise UnsafeBind(
            f"refusing to listen on {listen} in plaintext: beyond loopback tokens would cross the network "
            "readable; set [daemon] tls_cert and tls_key (and tls_client_ca to require client certificates), "
            "or insecure_plaintext = true to accept the risk"
        )


def tls_beyond_loopback(settings: Settings) -> bool:
    """Whether the TCP listener speaks TLS: beyond loopback with a certificate (loopback stays plain)."""
    listen = settings.daemon.listen
    return listen is not None and settings.daemon.tls_cert is not None and not is_loopback(split_listen(listen)[0])


def tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's TLS settings for the TCP listener (DESIGN "Security")."""
    daemon = settings.daemon
    options: dict[str, Any] = {"ssl_certfile": daemon.tls_cert, "ssl_keyfile": daemon.tls_key}
    if daemon.tls_client_ca is not None:
        options |= {"ssl_ca_certs": str(daemon.tls_client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options


def proxy_options(settings: Settings) -> dict[str, Any]:
    """X-Forwarded-* count only from `trusted_proxies` (uvicorn would trust them from loopback)."""
    proxies = settings.daemon.trusted_proxies
    return {"proxy_headers": bool(proxies), "forwarded_allow_ips": proxies or []}


def reload_tokens_on_sighup(app: Any) -> None:
    """DESIGN "Security": SIGHUP reloads the tokens file; a file that fails keeps the old tokens."""
    token_file = app.state.token_file
    if token_file is None:
        return
    log = logging.getLogger("mkd")

    def reload(_signum: int, _frame: object) -> None:
        try:
            tokens = token_file.reload()
        except InvalidInput as exc:
            log.error("SIGHUP: tokens file not reloaded, the old tokens stay: %s", exc.detail)
            return
        log.info("SIGHUP: reloaded %d token(s) from %s", len(tokens), token_file.path)

    signal.signal(signal.SIGHUP, reload)


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
        scheme = "https" if tls_beyond_loopback(settings) else "http"
        urls.append(f"{scheme}://{shown}:{tcp.getsockname()[1]}/")
        sockets.append(tcp)
    if not sockets:
        raise UnsafeBind("nothing to listen on: set [daemon] listen or socket")
    return sockets, urls


def run(settings: Settings, *, announce: bool = True) -> None:
    from mkd.app import create_app

    sockets = inherited_sockets()  # socket activation (deploy/mkd.socket): systemd's sockets replace our binds
    if sockets:
        check_inherited(settings, sockets)
    else:
        check_bind(settings)
    failures: list[BaseException] = []
    servers: list[uvicorn.Server] = []

    def start_failed(error: BaseException) -> None:
        failures.append(error)
        for server in servers:
            server.should_exit = True

    # Start-up runs once the sockets listen, so /healthz and /readyz (503 "starting") answer. The
    # app is made first all the same: a bad tokens file is refused before anything binds.
    app = create_app(settings, on_start_failure=start_failed)
    check_transport(settings)
    if sockets:
        urls = [describe(sock) for sock in sockets]
    else:
        sockets, urls = bind_sockets(settings)
    if announce:
        for url in urls:
            print(f"mkd: dashboard and API at {url}", flush=True)  # noqa: T201
    tune_malloc()  # uploads: see mkd.malloc_tuning
    tune_gc()  # reads' p99: see mkd.gc_tuning
    open_files = raise_open_files_limit()  # DESIGN "Limits": before any socket is accepted
    show_daemon_log(settings.daemon.log_level)
    if settings.daemon.insecure_plaintext and not tls_beyond_loopback(settings):
        logging.getLogger("mkd").warning(
            "insecure_plaintext = true: tokens and data cross the network unencrypted beyond loopback")
    reload_tokens_on_sighup(app)
    # loop="auto" takes uvloop (a dependency): it reads the socket with less per-read overhead.
    # DESIGN "Limits": uvicorn's own protocol cannot time out headers nor answer past a connection
    # cap the way DESIGN asks; mkd.bounded_http says why and adds it (limit_concurrency stays off).
    limits = settings.limits
    protocol = bounded_protocol(limits, app.state.limit_refusals, open_files)
    common: dict[str, Any] = {"log_level": settings.daemon.log_level, "loop": "auto", "http": protocol,
                              "timeout_graceful_shutdown": 5, "timeout_keep_alive": limits.keepalive_timeout_s,
                              **proxy_options(settings)}
    if not tls_beyond_loopback(settings):
        servers.append(uvicorn.Server(uvicorn.Config(app, lifespan="on", **common)))
        servers[0].run(sockets=sockets)
    else:
        # TLS on the TCP listener only: the unix socket stays plain (its file mode guards it), so
        # two servers share the app; the first runs its lifespan.
        tcp = [s for s in sockets if s.family != socket.AF_UNIX]
        plain = [s for s in sockets if s.family == socket.AF_UNIX]
        groups = [(tcp, tls_options(settings))] + ([(plain, {})] if plain else [])
        for index, (_, extra) in enumerate(groups):
            servers.append(uvicorn.Server(uvicorn.Config(app, lifespan="on" if index == 0 else "off",
                                                         **common, **extra)))
        with asyncio.Runner(loop_factory=servers[0].config.get_loop_factory()) as runner:
            runner.run(_serve_together(servers, [group for group, _ in groups]))
    if failures:
        raise StartupFailed(f"start-up failed: {failures[0]}")


async def _serve_together(servers: list[uvicorn.Server], sockets: list[list[socket.socket]]) -> None:
    """Run the servers until any of them is told to exit (each installs the same signal handlers,
    so only the last one hears SIGTERM): then stop them all."""

    async def follow() -> None:
        while not any(server.should_exit for server in servers):
            await asyncio.sleep(0.1)
        for server in servers:
            server.should_exit = True

    watcher = asyncio.create_task(follow())
    try:
        await asyncio.gather(*(server.serve(sockets=group) for server, group in zip(servers, sockets, strict=True)))
    finally:
        watcher.cancel()
