"""parse_instance_plan: both input forms, DTS and DTB alike, and every refusal naming its property."""

from __future__ import annotations

import pytest

from mkd.devicetree.dts import dts_to_dtb
from mkd.devicetree.fdt import TreeWriter
from mkd.devicetree.parse import parse_instance_plan
from mkd.domain.requests import InstanceRequest, ResourceRequest
from mkd.errors import KernelError

V2_PLAN = """/dts-v1/;
/ {
	compatible = "multikernel-v1";
	instances {
		web {
			id = <1>;
			resources {
				cpus = <2 3>;
				memory-bytes = <0x20000000>;
				llc-way-mask = <0x30>;
				numa-nodes = <0 1>;
				devices {
					nic {
						device-type = "pci";
						pci-id = "0000:65:00.0";
						vendor-id = <0x8086>;
						device-id = <0x1572>;
					};
					uart { device-type = "platform"; device-name = "serial1"; };
				};
			};
		};
		batch {
			resources { cpus = <4>; };
		};
	};
};
"""

OVERLAY_PLAN = """/dts-v1/;
/plugin/;
/ {
	fragment@1 {
		target-path = "/instances";
		__overlay__ {
			instance-create {
				instance-name = "batch";
				resources { cpus = /bits/ 64 <4>; };
			};
		};
	};
	fragment@0 {
		target-path = "/instances";
		__overlay__ {
			instance-create {
				instance-name = "web";
				id = <1>;
				resources {
					memory-bytes = /bits/ 64 <0x20000000>;
					cpus = /bits/ 64 <2 3>;
					llc-way-mask = <0x30>;
					numa-nodes = <0 1>;
					devices {
						nic { device-type = "pci"; pci-id = "0000:65:00.0"; };
						uart { device-type = "platform"; device-name = "serial1"; };
					};
				};
			};
		};
	};
};
"""

WEB = ResourceRequest(
    cpus=(2, 3),
    numa_nodes=(0, 1),
    memory_bytes=512 << 20,
    llc_way_mask=0x30,
    devices=("0000:65:00.0", "serial1"),
)
BATCH = ResourceRequest(cpus=(4,))


def refused(data: str | bytes, errno_name: str = "EINVAL") -> str:
    """Parse expecting a KernelError with `errno_name`; return its detail."""
    body = data.encode() if isinstance(data, str) else data
    with pytest.raises(KernelError) as err:
        parse_instance_plan(body)
    assert err.value.errno == errno_name, err.value.detail
    assert err.value.status == 422
    return err.value.detail


def v2_instance(body: str, name: str = "web") -> str:
    return f"/dts-v1/;\n/ {{\n\tinstances {{\n\t\t{name} {{\n{body}\n\t\t}};\n\t}};\n}};\n"


def v2_resources(props: str) -> str:
    return v2_instance(f"id = <1>; resources {{ {props} }};")


def overlay_create(body: str) -> str:
    return (
        '/dts-v1/;\n/plugin/;\n/ { fragment@0 { target-path = "/instances"; __overlay__ {\n'
        f"instance-create {{ {body} }};\n}}; }}; }};\n"
    )


def overlay_resources(props: str) -> str:
    return overlay_create(f'instance-name = "web"; resources {{ {props} }};')


def test_v2_plan_from_dts() -> None:
    assert parse_instance_plan(V2_PLAN.encode()) == [
        InstanceRequest(name="web", id=1, resources=WEB, origin="/instances/web"),
        InstanceRequest(name="batch", id=None, resources=BATCH, origin="/instances/batch"),
    ]


def test_overlay_plan_takes_fragments_in_unit_address_order() -> None:
    assert parse_instance_plan(OVERLAY_PLAN.encode()) == [
        InstanceRequest(name="web", id=1, resources=WEB, origin="/fragment@0/__overlay__/instance-create"),
        InstanceRequest(name="batch", id=None, resources=BATCH, origin="/fragment@1/__overlay__/instance-create"),
    ]


@pytest.mark.parametrize("text", [V2_PLAN, OVERLAY_PLAN])
def test_dts_and_dtb_of_one_plan_parse_identically(text: str) -> None:
    assert parse_instance_plan(dts_to_dtb(text)) == parse_instance_plan(text.encode())


def test_v2_and_overlay_forms_of_one_plan_mean_the_same() -> None:
    v2 = parse_instance_plan(V2_PLAN.encode())
    overlay = parse_instance_plan(OVERLAY_PLAN.encode())
    assert [(r.name, r.id, r.resources) for r in v2] == [(r.name, r.id, r.resources) for r in overlay]


def test_several_instance_creates_in_one_fragment_keep_document_order() -> None:
    text = overlay_create('instance-name = "b"; resources { };').replace(
        "instance-create {", 'instance-create@2 { instance-name = "a"; resources { }; };\ninstance-create@1 {'
    )
    assert [r.name for r in parse_instance_plan(text.encode())] == ["a", "b"]


def test_root_baseline_of_a_v2_root_tree_is_not_part_of_the_plan() -> None:
    text = V2_PLAN.replace("\tinstances {", "\tresources { cpus = <1>; };\n\tinstances {", 1)
    assert [r.name for r in parse_instance_plan(text.encode())] == ["web", "batch"]


# --- cell widths per form ---------------------------------------------------------------------


def test_v2_memory_bytes_must_be_u32() -> None:
    detail = refused(v2_resources("memory-bytes = /bits/ 64 <0x20000000>;"))
    assert detail == "/instances/web/resources/memory-bytes: must be 4 bytes (u32) in a v2 tree, got 8"


def test_overlay_memory_bytes_must_be_u64() -> None:
    # overlays.rst shows `memory-bytes = <0x10000000>`, but the kernel reads 8 bytes (spec 5.3).
    detail = refused(overlay_resources("memory-bytes = <0x10000000>;"))
    assert detail == (
        "/fragment@0/__overlay__/instance-create/resources/memory-bytes: must be 8 bytes (u64) in a tree overlay, got 4"
    )


def test_overlay_cpus_must_be_u64_cells() -> None:
    detail = refused(overlay_resources("cpus = <4 5 6>;"))
    assert "resources/cpus: must be a list of 8-byte (u64) cells in a tree overlay, got 12 bytes" in detail


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ("cpus = [00 00 01];", "resources/cpus: must be a list of 4-byte (u32) cells in a v2 tree, got 3"),
        ("cpus;", "resources/cpus: must not be empty"),
        ("memory-bytes = <0>;", "resources/memory-bytes: must be non-zero and a multiple of 4096, got 0"),
        ("memory-bytes = <0x1001>;", "resources/memory-bytes: must be non-zero and a multiple of 4096"),
        ("llc-way-mask = <0>;", "resources/llc-way-mask: must be non-zero"),
        ("llc-way-mask = /bits/ 64 <3>;", "resources/llc-way-mask: must be 4 bytes (u32), got 8"),
        ("numa-nodes = <1024>;", "resources/numa-nodes: node 1024 is not below MAX_NUMNODES (1024)"),
        ("frobs = <1>;", "/instances/web/resources/frobs: unknown property"),
        ('device-names = "eth0";', "resources/device-names: is not supported"),
        ("linux,resctrl-closid = <3>;", "resources/linux,resctrl-closid: is generated by the host"),
        ("virtio { };", "/instances/web/resources/virtio: virtio devices are not supported"),
        ("extra { };", "/instances/web/resources/extra: unknown node"),
    ],
)
def test_bad_resource_properties_name_node_and_property(props: str, expected: str) -> None:
    assert expected in refused(v2_resources(props))


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ('pci-id = "0000:65:00.0";', "nic: device-type is required"),
        ('device-type = "usb";', 'nic/device-type: \'usb\' is not "pci" or "platform"'),
        ('device-type = "pci";', "nic: a pci device needs pci-id"),
        ('device-type = "pci"; pci-id = "65:00.0";', "nic/pci-id: '65:00.0' is not DDDD:BB:SS.F"),
        ('device-type = "platform";', "nic: a platform device needs device-name or acpi-hid"),
        ('device-type = "pci"; pci-id = "0000:65:00.0"; driver = "vfio";', "nic/driver: unknown property"),
        ('device-type = "pci"; pci-id = <1>;', "nic/pci-id: must be a single NUL-terminated string"),
    ],
)
def test_bad_devices_are_refused(device: str, expected: str) -> None:
    detail = refused(v2_resources(f"devices {{ nic {{ {device} }}; }};"))
    assert detail.startswith("/instances/web/resources/devices/nic")
    assert expected in detail


def test_platform_device_by_acpi_hid() -> None:
    [request] = parse_instance_plan(
        v2_resources('devices { d { device-type = "platform"; acpi-hid = "PNP0501"; }; };').encode()
    )
    assert request.resources.devices == ("PNP0501",)


# --- names and ids ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("1234", "'1234' is numeric"),
        ("a" * 32, "must be 1-31 characters"),
        ("web@1", "'web@1' has '@'"),
    ],
)
def test_v2_node_names_follow_the_name_rules(name: str, expected: str) -> None:
    detail = refused(v2_instance("id = <1>; resources { };", name=name))
    assert detail.startswith(f"/instances/{name}: the node name is the instance name")
    assert expected in detail


@pytest.mark.parametrize("name", ["", "a/b", "has space", "x" * 32, "007", "+7", ".", ".."])
def test_overlay_instance_names_follow_the_name_rules(name: str) -> None:
    detail = refused(overlay_create(f'instance-name = "{name}"; resources {{ }};'))
    assert detail.startswith("/fragment@0/__overlay__/instance-create/instance-name: ")


def test_longest_name_is_accepted() -> None:
    name = "A-z0,._+" + "x" * 23
    [request] = parse_instance_plan(v2_instance("resources { };", name=name).encode())
    assert request.name == name


@pytest.mark.parametrize("value", ["0", "2048", "0xffffffff"])
def test_ids_outside_1_to_2047_are_refused(value: str) -> None:
    detail = refused(v2_instance(f"id = <{value}>; resources {{ }};"))
    assert detail.startswith("/instances/web/id: ") and "outside 1..2047" in detail


def test_id_must_be_u32() -> None:
    assert "/instances/web/id: must be 4 bytes (u32), got 8" in refused(
        v2_instance("id = /bits/ 64 <1>; resources { };")
    )


def test_host_generated_closid_is_refused_on_the_instance_node() -> None:
    detail = refused(v2_instance("id = <1>; linux,resctrl-closid = <2>; resources { };"))
    assert detail.startswith("/instances/web/linux,resctrl-closid: is generated by the host")


# --- structure --------------------------------------------------------------------------------


def test_v2_instance_without_resources_is_enoent_like_the_kernel() -> None:
    assert refused(v2_instance("id = <1>;"), "ENOENT") == "/instances/web: has no resources node"


def test_overlay_instance_without_resources_is_einval() -> None:
    detail = refused(overlay_create('instance-name = "web";'))
    assert detail == "/fragment@0/__overlay__/instance-create: has no resources node"


def test_overlay_instance_without_a_name() -> None:
    assert refused(overlay_create("resources { };")).endswith("instance-create: has no instance-name")


def test_fragment_without_target_path() -> None:
    text = "/dts-v1/;\n/ { fragment@0 { __overlay__ { instance-create { }; }; }; };\n"
    assert refused(text) == "/fragment@0: has no target-path"


def test_fragment_without_overlay_node() -> None:
    text = '/dts-v1/;\n/ { fragment@0 { target-path = "/instances"; }; };\n'
    assert refused(text) == "/fragment@0: has no __overlay__ node"


@pytest.mark.parametrize("target", ["/resources", "/instances/web", "/", "/instances/"])
def test_fragment_target_must_be_instances(target: str) -> None:
    text = overlay_create('instance-name = "web"; resources { };').replace('"/instances"', f'"{target}"')
    detail = refused(text)
    assert detail.startswith("/fragment@0/target-path: ")
    assert 'targets "/instances" only' in detail


def test_fragment_with_a_bad_unit_address() -> None:
    text = overlay_create('instance-name = "web"; resources { };').replace("fragment@0", "fragment@zz")
    assert "bad unit address 'zz'" in refused(text)


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        ('instance-remove { instance-name = "web"; };', "an instance plan only creates"),
        ("cpu-add { cpu@1 { reg = <0 1>; }; };", "resource operations cannot target /instances"),
        ("bogus { };", "unknown overlay operation"),
    ],
)
def test_other_overlay_operations_are_refused(op: str, expected: str) -> None:
    text = '/dts-v1/;\n/ { fragment@0 { target-path = "/instances"; __overlay__ { ' + op + " }; }; };\n"
    assert expected in refused(text)


def test_chosen_is_refused_in_instance_create() -> None:
    detail = refused(overlay_create('instance-name = "web"; resources { }; chosen { bootargs = "x"; };'))
    assert detail.startswith("/fragment@0/__overlay__/instance-create/chosen: ")


def test_neither_form_is_refused() -> None:
    assert "not an instance plan" in refused("/dts-v1/;\n/ { resources { cpus = <1>; }; };\n")


def test_mixed_forms_are_refused() -> None:
    text = V2_PLAN.replace("\tinstances {", '\tfragment@0 { target-path = "/instances"; };\n\tinstances {')
    assert "mixes a v2 /instances node with overlay fragment@N nodes" in refused(text)


def test_empty_plan_is_refused() -> None:
    assert refused("/dts-v1/;\n/ { instances { }; };\n") == "/: the plan defines no instance"


def test_unknown_root_property() -> None:
    assert refused(V2_PLAN.replace("\tinstances {", "\tbogus = <1>;\n\tinstances {")) == ("/bogus: unknown property")


def test_duplicate_property_in_a_hand_made_dtb() -> None:
    writer = TreeWriter()
    with writer.node(""), writer.node("instances"), writer.node("web"):
        writer.prop_bytes("id", (1).to_bytes(4, "big"))
        writer.prop_bytes("id", (2).to_bytes(4, "big"))
        with writer.node("resources"):
            pass
    assert refused(writer.finish()) == "/instances/web/id: property appears twice"
