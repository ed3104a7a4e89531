"""create_app(): the FastAPI application, its lifespan and its error handlers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from mkd import crash_points
from mkd.api.audit_middleware import AuditLog, AuditMiddleware
from mkd.api.auth_middleware import TokenAuthMiddleware
from mkd.api.body_limits import BodyLimitMiddleware
from mkd.api.conditional_get import ConditionalGet
from mkd.api.connection_limit import ConnectionLimitGuard
from mkd.api.cross_site_guard import CrossSiteGuard
from mkd.api.documents import document_components
from mkd.api.idempotency_middleware import IdempotencyMiddleware
from mkd.api.limit_refusals import LimitRefusals
from mkd.api.openapi_headers import add_header_docs
from mkd.api.prebuilt import ApiWire
from mkd.api.problems import install_problem_handlers
from mkd.api.read_replay import ReadReplay
from mkd.api.request_metrics import RequestMetrics, RequestMetricsMiddleware
from mkd.api.route_warmup import warm_routes
from mkd.api.routes import (
    actions,
    console,
    dashboard,
    declared,
    events,
    fleet,
    health,
    host,
    images,
    instances,
    pool,
    session,
)
from mkd.api.session_cookie import SessionSigner
from mkd.api.writes_first import WritesFirst
from mkd.auth_tokens import TokenFile, load_peer_token
from mkd.backends.registry import make_backend
from mkd.config import Settings
from mkd.db.migrate import upgrade_to_head
from mkd.db.session import create_private, make_engine
from mkd.devicetree.dts import configure_dtc
from mkd.images.store import ImageStore
from mkd.services import sd_notify
from mkd.services.console_attach import open_console_history
from mkd.services.context import Daemon
from mkd.services.event_bus import EventBus
from mkd.services.event_stream import prune_events
from mkd.services.idempotency import drop_in_flight, expire_idempotency
from mkd.services.kernel_poller import poll_kernel
from mkd.services.read_model import ReadModel
from mkd.services.reconcile import reconcile
from mkd.services.reconciler import Reconciler

log = logging.getLogger("mkd")
HOUSEKEEPING_S = 10.0


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def open_daemon(settings: Settings) -> Daemon:
    """Migrate, open the backend, reconcile: everything /readyz waits for."""
    settings.daemon.state_dir.mkdir(parents=True, exist_ok=True)
    crash_points.arm(settings.daemon.crash_at)
    create_private(settings.database_path)  # before Alembic makes it with the umask's mode
    upgrade_to_head(settings.database_path)
    engine = make_engine(settings.database_path, synchronous=settings.daemon.sqlite_synchronous)
    backend = make_backend(settings)
    host = backend.probe()
    daemon = Daemon(settings=settings, engine=engine, backend=backend, store=ImageStore(settings.images_dir),
                    bus=EventBus(), host=host, reads=ReadModel(engine, host.capabilities, ApiWire()))
    drop_in_flight(daemon)
    prune_events(daemon)
    changes = reconcile(daemon=daemon)
    if changes:
        log.info("reconciled %d instance(s) with the kernel", len(changes))
    daemon.console = open_console_history(daemon)
    daemon.reads.refresh()  # the first reads answer from memory too
    daemon.ready = True
    log.info("ready: %s backend, %s kernel", backend.name, daemon.host.kernel_profile)
    return daemon


async def follow_kernel(daemon: Daemon) -> None:
    """Record what the kernel does on its own (self-halt, crash, failure): the one status
    poller, every `[daemon] status_poll_interval_s` (the kernel raises no notification)."""
    interval = daemon.settings.daemon.status_poll_interval_s
    while True:
        await anyio.sleep(interval)
        try:
            await run_in_threadpool(poll_kernel, daemon)
        except Exception:  # one failed poll must not stop the next
            log.exception("status poll failed")


async def housekeeping(daemon: Daemon) -> None:
    while True:
        await anyio.sleep(HOUSEKEEPING_S)
        try:
            await run_in_threadpool(prune_events, daemon)
            await run_in_threadpool(expire_idempotency, daemon)
        except Exception:
            log.exception("housekeeping failed")


def create_app(settings: Settings | None = None, *,
               on_start_failure: Callable[[BaseException], None] | None = None) -> FastAPI:
    """The application. With `on_start_failure` (what `mkd serve` passes), start-up (migrations,
    backend, reconciliation) runs after the server is listening, so `/healthz` answers and
    `/readyz` says 503 "starting" meanwhile (DESIGN "HTTP API"), and a failed start-up calls it
    instead of raising. Without it, start-up finishes before the app serves anything (tests)."""
    settings = settings or Settings()

    async def start(app: FastAPI, tasks: anyio.abc.TaskGroup) -> None:
        try:
            daemon = await run_in_threadpool(open_daemon, settings)
        except Exception as exc:
            if on_start_failure is None:
                raise
            log.exception("start-up failed")
            app.state.not_ready_reason = f"start-up failed: {exc}"
            on_start_failure(exc)
            return
        # Before the daemon serves: the first reader does not build FastAPI's route contexts, and
        # nothing awaits between serving the daemon and starting its poller and reconciler.
        await run_in_threadpool(warm_routes, app)
        if app.state.fleet is not None:
            # DESIGN "Fleet", fencing: what is placed elsewhere is stopped before the daemon serves.
            await app.state.fleet.prepare(daemon)
        app.state.daemon = daemon
        tasks.start_soon(follow_kernel, daemon)
        tasks.start_soon(housekeeping, daemon)
        reconciler = Reconciler(daemon, concurrency=settings.reconciler.concurrency,
                                poll_interval_s=settings.reconciler.poll_interval_s,
                                stop_timeout_s=settings.reconciler.stop_timeout_s)
        daemon.reconciler = reconciler
        tasks.start_soon(reconciler.run)
        if app.state.fleet is not None:
            app.state.fleet.start(daemon, tasks)
        sd_notify.notify("READY=1")  # deploy/mkd.service is Type=notify
        tasks.start_soon(sd_notify.keep_watchdog)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tasks:
            if on_start_failure is None:
                await start(app, tasks)
            else:
                tasks.start_soon(start, app, tasks)
            try:
                yield
            finally:
                tasks.cancel_scope.cancel()
                daemon: Daemon | None = app.state.daemon
                if daemon is not None:
                    daemon.ready = False
                    daemon.not_ready_reason = "shutting down"
                    daemon.bus.close()
                    if daemon.console is not None:
                        daemon.console.close()
                    daemon.backend.close()
                    daemon.engine.dispose()
                if app.state.fleet is not None:
                    with anyio.CancelScope(shield=True):
                        await app.state.fleet.close()

    app = FastAPI(
        title="mkd",
        version="0.1.0",
        summary="Linux multikernel instance daemon",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.settings = settings
    app.state.daemon = None
    app.state.not_ready_reason = "starting: migrations, backend, reconciliation"
    # DESIGN "Fleet": the fleet's code (and its etcd client) is imported only when configured.
    app.state.fleet = None
    if settings.fleet is not None:
        from mkd.fleet.member import FleetMember

        app.state.fleet = FleetMember(settings)
    install_problem_handlers(app)

    def read_generation(_scope: Scope) -> int | None:
        daemon: Daemon | None = app.state.daemon
        return daemon.reads.generation if daemon is not None and daemon.ready else None

    # Innermost: every middleware below still runs for a replayed read (issue 15).
    app.add_middleware(ReadReplay, generation=read_generation,
                       read_model_endpoints=(instances.list_instances, instances.read_instance, pool.read_pool),
                       constant_endpoints=(host.read_host, health.healthz))
    app.add_middleware(WritesFirst)  # reads wait (briefly) for the writes in flight
    app.add_middleware(ConditionalGet)  # inside the metrics: they count a 304 as a 304
    app.state.request_metrics = RequestMetrics()
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.request_metrics)
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(CrossSiteGuard, allowed_hosts=settings.daemon.allowed_hosts)
    # DESIGN "Limits": outside every middleware that reads a body, so none buffers past a limit.
    app.state.limit_refusals = LimitRefusals()
    app.add_middleware(BodyLimitMiddleware, limits=settings.limits, refusals=app.state.limit_refusals)
    app.add_middleware(ConnectionLimitGuard, refusals=app.state.limit_refusals)
    configure_dtc(settings.limits)
    app.state.token_file = None
    app.state.session_signer = SessionSigner()
    if settings.daemon.tokens_file is not None:
        app.state.token_file = TokenFile(settings.daemon.tokens_file)
        # Added after the idempotency middleware, so it runs first: the idempotency scope
        # includes the token's name.
        peer_token_file = settings.fleet.peer_token_file if settings.fleet is not None else None
        app.add_middleware(TokenAuthMiddleware, token_file=app.state.token_file, signer=app.state.session_signer,
                           peer_token=load_peer_token(peer_token_file) if peer_token_file is not None else None)
    # Outermost: refused attempts (401, 403 and the rest) are audited too, with the token's name.
    app.add_middleware(AuditMiddleware, log=AuditLog(settings.daemon.state_dir / "audit.log",
                                                     max_bytes=settings.limits.audit_max_bytes,
                                                     files=settings.limits.audit_files))
    for module in (health, host, pool, instances, declared, actions, console, images, fleet, events, session,
                   dashboard):
        app.include_router(module.router)
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = add_header_docs(generate_openapi())
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, body in document_components().items():
                components.setdefault(name, body)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
