"""Corrupt and hostile input: refused with the right errno, naming the defect, in bounded time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from mkd.devicetree.dts import dts_to_dtb
from mkd.devicetree.fdt import TreeWriter
from mkd.devicetree.parse import MAX_DT_BYTES, parse_instance_plan
from mkd.errors import KernelError, MkdError, PayloadTooLarge

PLAN = "/dts-v1/;\n/ { instances { web { id = <1>; resources { cpus = <1>; }; }; }; };\n"
SANITY_BOUND_S = 10.0  # a sanity bound, not a benchmark


@contextmanager
def bounded_time() -> Iterator[None]:
    start = time.monotonic()
    yield
    assert time.monotonic() - start < SANITY_BOUND_S


def refusal(data: bytes) -> MkdError:
    with bounded_time(), pytest.raises(MkdError) as err:
        parse_instance_plan(data)
    return err.value


def einval(data: bytes) -> str:
    error = refusal(data)
    assert isinstance(error, KernelError)
    assert (error.errno, error.status) == ("EINVAL", 422)
    return error.detail


@pytest.fixture
def plan_dtb() -> bytes:
    return dts_to_dtb(PLAN)


def with_header_field(dtb: bytes, offset: int, value: int) -> bytes:
    return dtb[:offset] + value.to_bytes(4, "big") + dtb[offset + 4 :]


def test_truncated_below_the_header(plan_dtb: bytes) -> None:
    assert einval(plan_dtb[:20]) == "truncated DTB: 20 bytes, shorter than the 40-byte FDT header"


def test_truncated_blob_disagrees_with_totalsize(plan_dtb: bytes) -> None:
    detail = einval(plan_dtb[:-16])
    assert detail == f"DTB header totalsize is {len(plan_dtb)} bytes but {len(plan_dtb) - 16} bytes were given"


def test_trailing_bytes_disagree_with_totalsize(plan_dtb: bytes) -> None:
    assert "totalsize" in einval(plan_dtb + b"\0" * 8)


def test_wrong_magic_is_neither_dtb_nor_dts(plan_dtb: bytes) -> None:
    detail = einval(with_header_field(plan_dtb, 0, 0xDEADBEEF))
    assert "neither a DTB" in detail and "FDT magic" in detail


@pytest.mark.parametrize(("version", "last_comp"), [(1, 1), (0x20, 0x20), (17, 18)])
def test_unsupported_version(plan_dtb: bytes, version: int, last_comp: int) -> None:
    dtb = with_header_field(with_header_field(plan_dtb, 20, version), 24, last_comp)
    assert einval(dtb).startswith(f"unsupported DTB version {version} (last compatible version {last_comp})")


def test_corrupt_structure_block(plan_dtb: bytes) -> None:
    struct_offset = int.from_bytes(plan_dtb[8:12], "big")
    broken = plan_dtb[:struct_offset] + b"\xff\xff\xff\xff" + plan_dtb[struct_offset + 4 :]
    assert einval(broken).startswith("corrupt DTB: FDT_ERR_")


def test_dts_syntax_error_names_its_line() -> None:
    detail = einval(b"/dts-v1/;\n/ {\n\tinstances {\n\t\tweb { id = <1> }\n\t};\n};\n")
    assert detail.startswith("DTS does not compile: line 4:")


def test_binary_garbage_is_not_dts() -> None:
    assert "nor UTF-8 DTS text" in einval(bytes(range(256)))


def test_body_over_one_mib_is_payload_too_large() -> None:
    error = refusal(b" " * (MAX_DT_BYTES + 1))
    assert isinstance(error, PayloadTooLarge)
    assert error.status == 413


def test_megabyte_property_in_a_dtb_is_refused_by_name() -> None:
    writer = TreeWriter()
    with writer.node(""), writer.node("instances"), writer.node("web"):
        writer.prop_bytes("id", (1).to_bytes(4, "big"))
        with writer.node("resources"):
            writer.prop_bytes("cpus", b"\0" * 1_000_000)
    detail = einval(writer.finish())
    assert detail == "/instances/web/resources/cpus: property is 1000000 bytes; the limit is 65536"


def test_megabyte_property_in_dts_is_refused_by_name() -> None:
    text = '/dts-v1/;\n/ { instances { web { resources { devices { d { device-name = "%s"; }; }; }; }; }; };\n'
    detail = einval((text % ("x" * 1_000_000)).encode())
    assert detail.startswith("/instances/web/resources/devices/d/device-name: property is 1000001 bytes")


def test_property_of_a_full_mebibyte_is_payload_too_large() -> None:
    writer = TreeWriter()
    with writer.node(""):
        writer.prop_bytes("blob", b"\0" * MAX_DT_BYTES)
    assert isinstance(refusal(writer.finish()), PayloadTooLarge)


def too_many(data: bytes) -> str:
    error = refusal(data)
    assert isinstance(error, KernelError)
    assert (error.errno, error.status) == ("E2BIG", 422)
    return error.detail


def overlay_dts(creates: int) -> bytes:
    nodes = "".join(f'instance-create@{i:x} {{ instance-name = "i{i}"; resources {{ }}; }};' for i in range(creates))
    fragment = f'fragment@0 {{ target-path = "/instances"; __overlay__ {{ {nodes} }}; }};'
    return f"/dts-v1/;\n/plugin/;\n/ {{ {fragment} }};\n".encode()


def test_ten_thousand_instance_overlay_as_dts() -> None:
    text = overlay_dts(10_000)
    assert len(text) < MAX_DT_BYTES
    # dtc's own parser gives up near 10,000 siblings; either refusal is fine, quickly.
    error = refusal(text)
    assert isinstance(error, KernelError) and error.errno in ("E2BIG", "EINVAL")
    assert "more than 2047 instances" in error.detail or "memory exhausted" in error.detail


def test_three_thousand_instance_overlay_as_dts() -> None:
    assert "more than 2047 instances" in too_many(overlay_dts(3_000))


def overlay_dtb(fragments: int, creates_per_fragment: int) -> bytes:
    writer = TreeWriter()
    with writer.node(""):
        for f in range(fragments):
            with writer.node(f"fragment@{f:x}"):
                writer.prop_string("target-path", "/instances")
                with writer.node("__overlay__"):
                    for c in range(creates_per_fragment):
                        with writer.node(f"instance-create@{c:x}"):
                            writer.prop_string("instance-name", f"i{f}-{c}")
                            with writer.node("resources"):
                                pass
    return writer.finish()


def test_ten_thousand_instance_overlay_as_dtb() -> None:
    dtb = overlay_dtb(1, 10_000)
    assert len(dtb) < MAX_DT_BYTES
    too_many(dtb)


def test_thousands_of_fragments() -> None:
    dtb = overlay_dtb(4_000, 1)
    assert len(dtb) < MAX_DT_BYTES
    too_many(dtb)


def test_ten_thousand_instance_v2_tree_as_dtb() -> None:
    writer = TreeWriter()
    with writer.node(""), writer.node("instances"):
        for i in range(10_000):
            with writer.node(f"i{i}"), writer.node("resources"):
                pass
    too_many(writer.finish())


def test_three_thousand_instance_v2_tree_as_dts() -> None:
    nodes = "".join(f"i{i} {{ resources {{ }}; }};" for i in range(3_000))
    too_many(f"/dts-v1/;\n/ {{ instances {{ {nodes} }}; }};\n".encode())


def test_exactly_2047_instances_are_accepted() -> None:
    with bounded_time():
        plan = parse_instance_plan(overlay_dtb(1, 2047))
    assert len(plan) == 2047


def nested_dtb(depth: int, under: Callable[[TreeWriter], None]) -> bytes:
    writer = TreeWriter()
    with writer.node(""):
        under(writer)
        for level in range(depth):
            writer.begin_node(f"n{level}")
        for _ in range(depth):
            writer.end_node()
    return writer.finish()


def test_deep_nesting_under_an_unknown_root_node_is_refused() -> None:
    def one_instance(writer: TreeWriter) -> None:
        with writer.node("instances"), writer.node("web"), writer.node("resources"):
            pass

    dtb = nested_dtb(20_000, one_instance)
    assert len(dtb) < MAX_DT_BYTES
    assert einval(dtb) == "/n0: unknown node in a v2 tree"


def test_deep_nesting_inside_a_device_is_refused() -> None:
    writer = TreeWriter()
    with writer.node(""), writer.node("instances"), writer.node("web"), writer.node("resources"):
        with writer.node("devices"), writer.node("d"):
            writer.prop_string("device-type", "platform")
            writer.prop_string("device-name", "x")
            for level in range(20_000):
                writer.begin_node(f"n{level}")
            for _ in range(20_000):
                writer.end_node()
    assert einval(writer.finish()) == "/instances/web/resources/devices/d/n0: unknown node"


def nested_dts(depth: int) -> bytes:
    nest = "a { " * depth + "};" * depth
    return ("/dts-v1/;\n/ { instances { web { resources { " + nest + " }; }; }; };\n").encode()


def test_deep_nesting_in_dts_is_refused_by_the_schema() -> None:
    assert einval(nested_dts(1_000)) == "/instances/web/resources/a: unknown node"


def test_deeper_nesting_in_dts_stops_dtc() -> None:
    assert "memory exhausted" in einval(nested_dts(20_000))
