"""Device-tree plans and trees over HTTP (issue: pools and device trees)."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from mkd.devicetree.dts import dtb_to_dts, dts_to_dtb
from mkd.devicetree.fdt import open_dtb
from tests.conftest import RFC_V2, MakeClient
from tests.helpers import MEM, assert_problem, create

V2_PLAN = """/dts-v1/;
/ {
    compatible = "multikernel-v1";
    instances {
        web { id = <1>; resources { cpus = <2 3>; memory-bytes = <0x10000000>; }; };
        db { id = <2>; resources { cpus = <4>; memory-bytes = <0x8000000>; }; };
    };
};
"""

OVERLAY_PLAN = """/dts-v1/;
/ {
    fragment@0 {
        target-path = "/instances";
        __overlay__ {
            instance-create {
                instance-name = "web";
                id = <3>;
                resources { cpus = /bits/ 64 <2 3>; memory-bytes = /bits/ 64 <0x10000000>; };
            };
        };
    };
};
"""


def test_v2_plan_as_dts_creates_every_instance(client: TestClient) -> None:
    reply = client.post("/v1/instances", content=V2_PLAN, headers={"content-type": "text/x-dts"})
    assert reply.status_code == 201, reply.text
    items = reply.json()["items"]
    assert [(i["id"], i["name"], i["resources"]["cpus"]) for i in items] == [(1, "web", [2, 3]), (2, "db", [4])]
    assert [i["resources"]["memory_bytes"] for i in items] == [0x10000000, 0x8000000]


def test_the_same_plan_as_dtb_and_as_overlay(make_client: MakeClient) -> None:
    client = make_client(simulator={"kernel_profile": "tree"})
    dtb = dts_to_dtb(OVERLAY_PLAN)
    dry = client.post("/v1/instances?dry_run=true", content=dtb, headers={"content-type": "application/x-dtb"})
    assert dry.status_code == 200 and dry.json()["items"][0]["id"] == 3
    assert client.get("/v1/instances").json()["items"] == []
    reply = client.post("/v1/instances", content=dtb, headers={"content-type": "application/octet-stream"})
    assert reply.status_code == 201, reply.text
    assert reply.json()["items"][0]["name"] == "web"


def test_a_plan_is_all_or_nothing(client: TestClient) -> None:
    taken = client.post("/v1/instances",
                        json={"name": "taken", "id": 9, "resources": {"cpus": [4], "memory_bytes": MEM}})
    assert taken.status_code == 201
    body = assert_problem(client.post("/v1/instances", content=V2_PLAN, headers={"content-type": "text/plain"}),
                          409, "EBUSY")
    assert "db" in body["detail"] and "4" in body["detail"]
    assert [i["name"] for i in client.get("/v1/instances").json()["items"]] == ["taken"]


def test_bad_device_trees_are_4xx_and_change_nothing(client: TestClient) -> None:
    good = dts_to_dtb(V2_PLAN)
    cases = {
        "truncated": good[: len(good) // 2],
        "wrong magic": b"\xde\xad\xbe\xef" + good[4:],
        "wrong version": good[:20] + (1).to_bytes(4, "big") + good[24:],
        "syntax error": b"/dts-v1/;\n/ { instances { web { id = <1> }; };\n",
        "huge property": ("/dts-v1/;\n/ { instances { web { id = <1>; junk = [" + "00 " * 200_000 + "]; "
                          "resources { cpus = <2>; }; }; }; };\n").encode(),
    }
    for what, data in cases.items():
        started = time.monotonic()
        ctype = "application/x-dtb" if data[:1] in (b"\xd0", b"\xde") else "text/x-dts"
        reply = client.post("/v1/instances", content=data, headers={"content-type": ctype})
        assert 400 <= reply.status_code < 500, (what, reply.status_code, reply.text)
        assert reply.headers["content-type"].startswith("application/problem+json")
        assert time.monotonic() - started < 10, what
    over = client.post("/v1/instances", content=b"x" * (2 << 20), headers={"content-type": "text/x-dts"})
    assert_problem(over, 413)
    assert client.get("/v1/instances").json()["items"] == []


def test_ten_thousand_instance_overlay_is_refused_quickly(client: TestClient) -> None:
    from libfdt import FdtSw  # the test builds its hostile input with libfdt directly

    sw = FdtSw()
    sw.finish_reservemap()
    sw.begin_node("")
    for i in range(10_000):
        sw.begin_node(f"fragment@{i:x}")
        sw.property_string("target-path", "/instances")
        sw.begin_node("__overlay__")
        sw.begin_node("instance-create")
        sw.property_string("instance-name", f"i{i}")
        sw.begin_node("resources")
        sw.end_node()
        sw.end_node()
        sw.end_node()
        sw.end_node()
    sw.end_node()
    blob = bytes(sw.as_fdt().as_bytearray())
    started = time.monotonic()
    reply = client.post("/v1/instances", content=blob, headers={"content-type": "application/x-dtb"})
    assert 400 <= reply.status_code < 500, reply.text
    assert time.monotonic() - started < 10
    assert client.get("/v1/instances").json()["items"] == []


def test_pool_device_tree_round_trips_through_dtc(v2_client: TestClient) -> None:
    client = v2_client  # the v2 root tree lists the instances
    create(client, "web", cpus=[2, 3])
    dtb = client.get("/v1/pool/device-tree?format=dtb")
    assert dtb.status_code == 200 and dtb.headers["content-type"] == "application/x-dtb"
    root = open_dtb(dtb.content)
    assert dict(root.properties())["compatible"].rstrip(b"\0") == b"multikernel-v1"
    dts = client.get("/v1/pool/device-tree").text
    assert "instances" in dts and "web" in dts and "resources" in dts
    again = open_dtb(dts_to_dtb(dtb_to_dts(dtb.content)))
    web = again.child("instances").child("web")
    assert int.from_bytes(dict(web.properties())["id"], "big") == 1


def test_instance_device_tree_per_profile(make_client: MakeClient) -> None:
    v2 = make_client(simulator=RFC_V2)
    create(v2, "web", cpus=[2])
    text = v2.get("/v1/instances/web/device-tree").text
    assert text.startswith("/dts-v1/;") and "memory-bytes = <0x10000000>; // 256 MB" in text
    tree = make_client(simulator={"kernel_profile": "tree"})
    create(tree, "web", cpus=[2, 3])
    dtb = tree.get("/v1/instances/web/device-tree?format=dtb").content
    props = dict(open_dtb(dtb).child("resources").properties())
    assert props["cpus"] == (2).to_bytes(8, "big") + (3).to_bytes(8, "big")
    assert_problem(tree.get("/v1/instances/nosuch/device-tree"), 404, "ENOENT")
