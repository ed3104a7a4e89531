"""Schemathesis hooks for the fuzz runs (loaded through SCHEMATHESIS_HOOKS=tests.fuzz.hooks).

- Every call's status is appended to $MKD_FUZZ_LOG, so the test can print, per operation, how
  many 2xx it got.
- Nudges so stateful sequences get past the first refusal: four in five loads name a real
  kernel ($MKD_FUZZ_KERNEL, uploaded again if the run deleted it; random bytes are never a
  kernel); four in five creates are JSON asking for what the pool can give (one CPU on node 0,
  where the pool's memory is, and 256 MiB; old instances are removed first when many are left);
  four in five actions go without a random If-Match or Idempotency-Key and are aimed at an
  instance in a state the action applies to, when there is one. The fifth stays as generated:
  refusals count too. The schema's OpenAPI links chain the rest (create → the instance's
  actions, PATCH and DELETE; each action's answer → the next).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import httpx
import schemathesis

MiB = 1 << 20
KEEP_INSTANCES = 4  # a create first removes the oldest past this many: node 0 has CPUs 2..7 in the pool
_loads, _creates, _actions = itertools.count(), itertools.count(), itertools.count()


def _admin(case: Any) -> httpx.Client:
    return httpx.Client(base_url=os.environ["MKD_FUZZ_URL"], timeout=60)


def _label(case: Any) -> str:
    return f"{case.method.upper()} {case.path}"


def _plain(case: Any) -> None:
    """Drop the generated headers that refuse before the operation runs (a random If-Match is a
    412, a reused Idempotency-Key a replay or a 422) and a dry run's query."""
    for name in list(case.headers or {}):
        if name.lower() in ("if-match", "idempotency-key"):
            del case.headers[name]
    case.query = {}


# The states an action can start from: a random ref that names no instance is a 404, so most
# actions are aimed at a live instance the action applies to (when there is one).
_FROM_STATES = {"load": ("READY",), "start": ("LOADED",), "stop": ("ACTIVE",), "unload": ("LOADED", "FAILED")}


def _aim(case: Any, action: str) -> None:
    with _admin(case) as admin:
        items = admin.get("/v1/instances", params={"limit": 1000}).json()["items"]
    fitting = [item["id"] for item in items if item["state"] in _FROM_STATES[action]]
    if fitting:
        case.path_parameters = {**(case.path_parameters or {}), "ref": str(fitting[-1])}
        if action in ("stop", "unload"):
            case.body = {"force": True}  # a graceful stop waits for the guest's acknowledgement
            case.media_type = "application/json"


@schemathesis.hook
def before_call(ctx: Any, case: Any, kwargs: Any) -> None:
    label = _label(case)
    action = label.rsplit("/", 1)[1] if label.startswith("POST /v1/instances/{ref}/") else None
    if action is not None and next(_actions) % 5:
        _plain(case)
        _aim(case, action)
    if label == "POST /v1/instances/{ref}/load" and next(_loads) % 5:
        kernel = Path(os.environ["MKD_FUZZ_KERNEL"])
        with _admin(case) as admin:
            admin.post("/v1/images", content=kernel.read_bytes())  # again, if the run deleted it
        case.body = {"kernel": kernel.name}
        case.media_type = "application/json"
    elif label == "POST /v1/instances" and next(_creates) % 5:
        with _admin(case) as admin:
            items = admin.get("/v1/instances", params={"limit": 1000}).json()["items"]
            for item in items[:-KEEP_INSTANCES] if len(items) > KEEP_INSTANCES else []:
                if item["kimage"] is not None:
                    admin.post(f"/v1/instances/{item['id']}/unload", json={"force": True})
                admin.delete(f"/v1/instances/{item['id']}")
        _plain(case)
        case.body = {"name": f"fz{next(_creates)}",
                     "resources": {"cpu_count": 1, "numa_nodes": [0], "memory_bytes": 256 * MiB}}
        case.media_type = "application/json"


@schemathesis.hook
def after_call(ctx: Any, case: Any, response: Any) -> None:
    with open(os.environ["MKD_FUZZ_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{response.status_code}\t{_label(case)}\n")
