"""DTS text ↔ DTB through Debian's `dtc`, run as a bounded subprocess.

dtc is the only DTS parser: mkd never parses DTS text itself. Input DTS may come from clients,
so dtc must not read host files on their behalf: `/include/` and `/incbin/` are refused before
dtc runs (`/incbin/("/etc/shadow")` would otherwise become a property value).
"""

from __future__ import annotations

import re
import shutil
import subprocess

from mkd.devicetree.fdt import FDT_MAGIC, invalid, open_dtb
from mkd.devicetree.limits import DTC_TIMEOUT_S
from mkd.errors import MkdError

_FILE_DIRECTIVES = ("/include/", "/incbin/")
# dtc locates errors as "<stdin>:LINE.COL-ENDCOL" or "<stdin>:LINE.COL-ENDLINE.ENDCOL".
_DTC_LOCATION = re.compile(r"<stdin>:(\d+)\.(\d+)(?:-\d+(?:\.\d+)?)?:?")
# Summary lines dtc adds after the real errors; they say nothing a client can act on.
_DTC_NOISE = ("FATAL ERROR: Unable to parse input tree", "ERROR: Input tree has errors")
_MAX_DETAIL_LINES = 8


class DtcUnavailable(MkdError):
    """The host lacks a working dtc: a deployment fault, not the client's."""

    status = 503
    title = "Device-tree compiler unavailable"
    slug = "dtc-unavailable"


def is_dtb(data: bytes) -> bool:
    """True when `data` starts with the FDT magic 0xd00dfeed (DESIGN: the bytes decide)."""
    return data[:4] == FDT_MAGIC.to_bytes(4, "big")


def _dtc(args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    dtc = shutil.which("dtc")
    if dtc is None:
        raise DtcUnavailable("dtc (device-tree-compiler) is not installed")
    try:
        return subprocess.run(
            [dtc, "-q", *args, "-o", "-", "-"],
            input=data,
            capture_output=True,
            timeout=DTC_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise invalid(f"dtc did not finish within {DTC_TIMEOUT_S:g} s") from exc


def _dtc_errors(stderr: bytes) -> str:
    """dtc's own messages, with '<stdin>:L.C-E' rewritten as 'line L:C'."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(_DTC_NOISE)] or lines
    cleaned = [
        _DTC_LOCATION.sub(lambda m: f"line {m.group(1)}:{m.group(2)}:", line).replace("Error: ", "")
        for line in useful[:_MAX_DETAIL_LINES]
    ]
    return "; ".join(cleaned) or "dtc failed without a message"


def dts_to_dtb(text: str) -> bytes:
    """Compile DTS text; a syntax error → EINVAL carrying dtc's message and its line:col."""
    for directive in _FILE_DIRECTIVES:
        if directive in text:
            raise invalid(f"DTS input must not use {directive}: it would read files on the host")
    result = _dtc(["-I", "dts", "-O", "dtb"], text.encode())
    if result.returncode != 0:
        detail = _dtc_errors(result.stderr)
        if "memory exhausted" in detail:
            detail += " (dtc's parser stops at about 10,000 sibling or nested nodes)"
        raise invalid(f"DTS does not compile: {detail}")
    return result.stdout


def dtb_to_dts(dtb: bytes) -> str:
    """Decompile a DTB (validated first, so dtc never sees a corrupt blob)."""
    open_dtb(dtb)
    result = _dtc(["-I", "dtb", "-O", "dts"], dtb)
    if result.returncode != 0:
        raise invalid(f"DTB does not decompile: {_dtc_errors(result.stderr)}")
    return result.stdout.decode()
