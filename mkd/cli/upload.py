"""Image uploads from the CLI: the file streamed in blocks (never read whole), a progress bar on stderr."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from mkd.cli.client import Target, call

BLOCK = 1 << 20  # what one read takes from the file and one write hands to the socket


def blocks(path: Path, progress: Progress | None = None) -> Iterator[bytes]:
    """The file's bytes one block at a time, advancing the bar as each block is handed to httpx."""
    with open(path, "rb") as fh:
        task = progress.add_task(path.name, total=os.fstat(fh.fileno()).st_size) if progress else None
        while block := fh.read(BLOCK):
            yield block
            if progress is not None and task is not None:
                progress.advance(task, len(block))


def upload(target: Target, path: Path, *, show_progress: bool | None = None) -> dict[str, Any]:
    """POST /v1/images with the file as the body; answers the image (sha256, size, format).

    The bar is shown when asked, or by default when stderr is a terminal (scripts get none)."""
    size = path.stat().st_size  # also refuses a missing file before any connection
    headers = {"content-type": "application/octet-stream", "content-length": str(size)}
    if show_progress is None:
        show_progress = sys.stderr.isatty()
    if not show_progress:
        answer: dict[str, Any] = call(target, "POST", "/v1/images", content=blocks(path), headers=headers).json()
        return answer
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
                        TransferSpeedColumn(), TimeRemainingColumn(), console=Console(file=sys.stderr))
    with progress:
        answer = call(target, "POST", "/v1/images", content=blocks(path, progress), headers=headers).json()
    return answer
