"""The only module that touches pylibfdt: a typed reader and writer for flattened device trees.

libfdt has no type stubs, so everything it returns is Any; this module turns it into `bytes`,
`str` and `int` at the boundary. Reading validates the whole blob first (header, totalsize,
`fdt_check_full`), so later walks cannot run off a corrupt structure block.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

import libfdt

from mkd.devicetree.limits import MAX_NODE_DEPTH, MAX_PROPERTY_BYTES
from mkd.errors import KernelError

FDT_MAGIC = 0xD00DFEED
FDT_HEADER_BYTES = 40
# libfdt reads version 16 and 17 trees; dtc writes 17 (last_comp_version 16).
_MIN_VERSION = 16
_MAX_LAST_COMP_VERSION = 17

_NOTFOUND = (libfdt.NOTFOUND,)


def invalid(detail: str) -> KernelError:
    """A refusal of device-tree body content (spec 5.1 rule 1: a bad FDT is EINVAL)."""
    return KernelError(errno.EINVAL, detail, body_content=True)


class DtNode:
    """A read-only view of one node of a validated blob; children are walked lazily."""

    __slots__ = ("_fdt", "_offset", "name", "path", "depth")

    def __init__(self, fdt: libfdt.FdtRo, offset: int, name: str, path: str, depth: int) -> None:
        self._fdt = fdt
        self._offset = offset
        self.name = name
        self.path = path
        self.depth = depth

    def __repr__(self) -> str:
        return f"DtNode({self.path!r})"

    @property
    def unit_name(self) -> str:
        """The name before '@' (`fragment@1` → `fragment`)."""
        return self.name.partition("@")[0]

    @property
    def unit_address(self) -> str | None:
        """The text after '@', or None when the name has none."""
        base, at, unit = self.name.partition("@")
        return unit if at else None

    def prop_path(self, prop: str) -> str:
        return f"{self.path.rstrip('/')}/{prop}"

    def properties(self) -> Iterator[tuple[str, bytes]]:
        """(name, value) in blob order; a property over MAX_PROPERTY_BYTES is refused by name."""
        offset = self._fdt.first_property_offset(self._offset, _NOTFOUND)
        while offset >= 0:
            try:
                prop = self._fdt.get_property_by_offset(offset)
            except (UnicodeDecodeError, SystemError) as exc:
                # pylibfdt decodes the name as UTF-8 and fails (a SystemError wrapping it) on other bytes.
                raise invalid(f"{self.path}: a property name is not UTF-8 text") from exc
            name = str(prop.name)
            if len(prop) > MAX_PROPERTY_BYTES:
                raise invalid(
                    f"{self.prop_path(name)}: property is {len(prop)} bytes; the limit is {MAX_PROPERTY_BYTES}"
                )
            yield name, bytes(prop)
            offset = self._fdt.next_property_offset(offset, _NOTFOUND)

    def children(self) -> Iterator[DtNode]:
        """Subnodes in blob order; a child deeper than MAX_NODE_DEPTH is refused."""
        offset = self._fdt.first_subnode(self._offset, _NOTFOUND)
        while offset >= 0:
            if self.depth + 1 > MAX_NODE_DEPTH:
                raise invalid(f"{self.path}: nodes nest deeper than {MAX_NODE_DEPTH} levels")
            name = _node_name(self._fdt, offset, self.path)
            yield DtNode(self._fdt, offset, name, f"{self.path.rstrip('/')}/{name}", self.depth + 1)
            offset = self._fdt.next_subnode(offset, _NOTFOUND)

    def child_names(self) -> Iterator[str]:
        """Names of the subnodes, without building views (cheap counting of hostile input)."""
        offset = self._fdt.first_subnode(self._offset, _NOTFOUND)
        while offset >= 0:
            yield _node_name(self._fdt, offset, self.path)
            offset = self._fdt.next_subnode(offset, _NOTFOUND)

    def child(self, name: str) -> DtNode | None:
        for node in self.children():
            if node.name == name:
                return node
        return None


def _node_name(fdt: libfdt.FdtRo, offset: int, parent: str) -> str:
    """A node's name; pylibfdt hands non-UTF-8 bytes back as lone surrogates, which no JSON
    answer can carry, so they are refused here by their parent's path."""
    try:
        name = str(fdt.get_name(offset))
        name.encode("utf-8")
    except (UnicodeError, SystemError) as exc:
        raise invalid(f"{parent}: a child node's name is not UTF-8 text") from exc
    return name


def _header_problem(buf: bytearray) -> str | None:
    if len(buf) < FDT_HEADER_BYTES:
        return f"truncated DTB: {len(buf)} bytes, shorter than the {FDT_HEADER_BYTES}-byte FDT header"
    magic = int(libfdt.fdt_magic(buf))
    if magic != FDT_MAGIC:
        return f"not a DTB: magic 0x{magic:08x}, expected 0x{FDT_MAGIC:08x}"
    version = int(libfdt.fdt_version(buf))
    last_comp = int(libfdt.fdt_last_comp_version(buf))
    if version < _MIN_VERSION or last_comp > _MAX_LAST_COMP_VERSION:
        return (
            f"unsupported DTB version {version} (last compatible version {last_comp}); "
            f"version {_MIN_VERSION} or {_MAX_LAST_COMP_VERSION} is required"
        )
    totalsize = int(libfdt.fdt_totalsize(buf))
    if totalsize != len(buf):
        # Spec 5.1 rule 2: the tree kernel refuses a write whose length is not fdt_totalsize.
        return f"DTB header totalsize is {totalsize} bytes but {len(buf)} bytes were given"
    return None


def open_dtb(data: bytes) -> DtNode:
    """Validate a whole DTB and return its root node; any defect → EINVAL naming it."""
    buf = bytearray(data)
    problem = _header_problem(buf)
    if problem is not None:
        raise invalid(problem)
    status = int(libfdt.fdt_check_full(buf, len(buf)))
    if status != 0:
        raise invalid(f"corrupt DTB: {libfdt.fdt_strerror(status)}")
    return DtNode(libfdt.FdtRo(buf), 0, "", "/", 0)


class TreeWriter:
    """Build a DTB node by node in document order (libfdt's sequential-write API)."""

    def __init__(self) -> None:
        self._sw = libfdt.FdtSw()
        self._sw.finish_reservemap()
        self._open = 0

    def begin_node(self, name: str) -> None:
        self._sw.begin_node(name)
        self._open += 1

    def end_node(self) -> None:
        self._sw.end_node()
        self._open -= 1

    @contextmanager
    def node(self, name: str) -> Iterator[None]:
        self.begin_node(name)
        yield
        self.end_node()

    def prop_bytes(self, name: str, value: bytes) -> None:
        self._sw.property(name, value)

    def prop_string(self, name: str, value: str) -> None:
        self._sw.property_string(name, value)

    def finish(self) -> bytes:
        if self._open != 0:
            raise RuntimeError(f"{self._open} nodes left open")
        try:
            fdt = self._sw.as_fdt()
        except libfdt.FdtException as exc:
            if exc.err != -libfdt.NOSPACE:
                raise
            # fdt_finish appends the FDT_END token; pylibfdt grows the buffer for properties and
            # nodes but not for that, so a tree that filled it exactly needs a few more bytes.
            self._sw.resize(len(self._sw.as_bytearray()) + self._sw.INC_SIZE)
            fdt = self._sw.as_fdt()
        fdt.pack()
        return bytes(fdt.as_bytearray())
