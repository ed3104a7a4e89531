"""GET and POST /v1/instances/{ref}/console as service calls (DESIGN "Desired state": Console)."""

from __future__ import annotations

import asyncio
import errno
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio.to_thread

from mkd.db.session import transaction
from mkd.errors import InvalidInput, KernelError
from mkd.services.console_follow import ConsoleFollowers, ConsoleLine, follow, history_text
from mkd.services.console_history import ConsoleHistory
from mkd.services.context import Daemon
from mkd.services.records import resolve_ref

INPUT_BYTES = 64 << 10  # the most a POST …/console sends at once
_OFFSET = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class _Target:
    id: int
    uid: str
    has_kimage: bool


def parse_offset(value: str | None) -> int | None:
    """A Last-Event-ID: the byte offset to resume after (None: from the current boot)."""
    if value is None or value.strip() == "":
        return None
    if not _OFFSET.fullmatch(value.strip()):
        raise InvalidInput(f"Last-Event-ID {value!r} is not a console offset (1 to 18 ASCII digits)")
    return int(value.strip())


def _target(daemon: Daemon, ref: str) -> tuple[ConsoleHistory, _Target]:
    """The instance (404 when unknown) and the console history (409 EOPNOTSUPP without one)."""
    with transaction(daemon.engine) as session:
        record = resolve_ref(session=session, ref=ref)
        target = _Target(record.id, record.uid, record.kimage is not None)
    history = daemon.console
    if history is None or not daemon.host.capabilities.get("console", False):
        raise KernelError(errno.EOPNOTSUPP, f"the {daemon.host.kernel_profile} kernel has no console device "
                          "(capability `console`, spec 8.8)", instance_id=target.id)
    history.know(target.id, target.uid)
    return history, target


def _followers(daemon: Daemon, history: ConsoleHistory) -> ConsoleFollowers:
    """The daemon's followers, made on first use in the event loop that serves them."""
    followers = daemon.console_followers
    if followers is None or followers.history is not history:
        followers = ConsoleFollowers(history, asyncio.get_running_loop(),
                                     limit=daemon.settings.limits.max_console_streams)
        daemon.console_followers = followers
    return followers


async def open_console_stream(daemon: Daemon, ref: str, after: int | None) -> AsyncIterator[ConsoleLine]:
    """Check and count the stream now (404, 409, 429 before any byte is sent); the lines follow.
    Without `after` the stream starts at the current boot's first kept byte."""
    history, target = await anyio.to_thread.run_sync(_target, daemon, ref)
    followers = _followers(daemon, history)
    followers.open_stream()
    try:
        if after is None:
            spans = await anyio.to_thread.run_sync(history.spans, target.id)
            after = spans[-1].start if spans else 0
    except BaseException:
        followers.close_stream()
        raise

    async def lines(start: int) -> AsyncIterator[ConsoleLine]:
        try:
            async for line in follow(followers, target.id, start):
                yield line
        finally:
            followers.close_stream()

    return lines(after)


def console_text(daemon: Daemon, ref: str) -> str:
    """`?follow=false`: the kept boots' output as text."""
    history, target = _target(daemon, ref)
    return history_text(history, target.id)


def send_console_input(daemon: Daemon, ref: str, data: bytes) -> int:
    """Input for the instance's console where the kernel takes it (spec 8.8.3): the bytes it took.
    409 ENODEV without a kimage; the device's own errnos (ENOSPC: its ring is full) as 409."""
    history, target = _target(daemon, ref)
    if not target.has_kimage:
        raise _conflict(KernelError(errno.ENODEV, "the instance has no kimage: nothing takes console input "
                                    "(spec 8.8.3)", instance_id=target.id))
    try:
        history.connect(target.id, target.uid)
        return history.send_input(target.id, data)
    except KernelError as exc:
        raise _conflict(exc) from exc
    except OSError as exc:
        code = exc.errno or errno.EIO
        raise _conflict(KernelError(code, f"console input refused: {exc.strerror or exc}",
                                    instance_id=target.id)) from exc


def _conflict(error: KernelError) -> KernelError:
    error.status = 409  # DESIGN: the instance's state refuses it, whatever the errno's usual status
    return error
