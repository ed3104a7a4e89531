"""`mkd apply -f FILE|DIR` and `mkd get NAME` (DESIGN "Desired state", CLI).

apply reads Instance and Pool documents (YAML, several per file, or JSON), uploads kernels and
initrds given as local paths first, prints the plan (`+ create`, `~ change`, `= unchanged`,
`- delete`) from the daemon's own dry runs, then applies: a PUT per document, and with --prune a
DELETE per declared instance the files no longer name. --wait waits for each generation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mkd.cli.client import EXIT_INVALID, CliError, Target, call
from mkd.cli.upload import upload

SHA256 = re.compile(r"^[0-9a-f]{64}$")
DOCUMENT_SUFFIXES = (".yaml", ".yml", ".json")
WAIT_S = 300


@dataclass
class Document:
    source: Path
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind"))

    @property
    def name(self) -> str:
        metadata = self.body.get("metadata") or {}
        return str(metadata.get("name", "")) if isinstance(metadata, dict) else ""


def read_documents(path: Path) -> list[Document]:
    """Every document of FILE, or of each .yaml/.yml/.json file of DIR in name order."""
    files = sorted(p for p in path.iterdir() if p.suffix in DOCUMENT_SUFFIXES) if path.is_dir() else [path]
    found: list[Document] = []
    for file in files:
        text = file.read_text()
        try:
            loaded = [json.loads(text)] if file.suffix == ".json" else list(yaml.safe_load_all(text))
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            raise CliError(f"{file}: not a readable document: {exc}", EXIT_INVALID) from exc
        for body in loaded:
            if body is None:
                continue  # an empty YAML document (a trailing ---)
            if not isinstance(body, dict) or body.get("kind") not in ("Instance", "Pool"):
                raise CliError(f"{file}: a document must be kind Instance or Pool", EXIT_INVALID)
            found.append(Document(file, body))
    names = [d.name for d in found if d.kind == "Instance"]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CliError(f"instance(s) declared twice: {', '.join(twice)}", EXIT_INVALID)
    return found


def upload_local_images(target: Target, document: Document, *, show_progress: bool | None) -> None:
    """spec.kernel / spec.initrd given as a local path (relative to the file): upload it first and
    put its sha256 in the document."""
    spec = document.body.get("spec")
    if document.kind != "Instance" or not isinstance(spec, dict):
        return
    for role in ("kernel", "initrd"):
        value = spec.get(role)
        if not isinstance(value, str) or SHA256.fullmatch(value):
            continue
        local = (document.source.parent / value).resolve()
        if not local.is_file():
            raise CliError(f"{document.source}: spec.{role} {value!r} is neither a sha256 nor a file", EXIT_INVALID)
        spec[role] = upload(target, local, show_progress=show_progress)["sha256"]


def _plan_line(target: Target, document: Document) -> tuple[str, str]:
    """('+'|'~'|'=', text) for one Instance document, from the daemon's dry run (which says the
    generation the PUT would leave: the same one when nothing changes)."""
    exists = call_ok(target, "GET", f"/v1/instances/{document.name}")
    dry = call(target, "PUT", f"/v1/instances/{document.name}", params={"dry_run": "true"},
               json=document.body).json()
    steps = ", ".join(step["action"] for step in dry.get("plan", []))
    if exists is None:
        return "+", f"create {document.name}" + (f" ({steps})" if steps else "")
    if exists.get("generation") is not None and dry.get("generation") == exists.get("generation"):
        return "=", f"unchanged {document.name}"
    return "~", f"change {document.name}" + (f" ({steps})" if steps else "")


def call_ok(target: Target, method: str, path: str) -> dict[str, Any] | None:
    try:
        body: dict[str, Any] = call(target, method, path).json()
        return body
    except CliError as exc:
        if exc.code == 3:  # not found
            return None
        raise


def declared_names(target: Target) -> set[str]:
    """Names of this daemon's declared instances (those that carry a spec)."""
    names: set[str] = set()
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
        page = call(target, "GET", "/v1/instances", params=params).json()
        names |= {item["name"] for item in page["items"] if item.get("spec") is not None}
        cursor = page.get("next_cursor")
        if not cursor:
            return names


def apply(target: Target, path: Path, *, dry_run: bool, prune: bool, wait: bool,
          show_progress: bool | None, echo: Any) -> None:
    apply_documents(target, read_documents(path), dry_run=dry_run, prune=prune, wait=wait,
                    show_progress=show_progress, echo=echo)


def apply_documents(target: Target, documents: list[Document], *, dry_run: bool, prune: bool, wait: bool,
                    show_progress: bool | None, echo: Any) -> None:
    """Upload, print the plan, apply (and with `wait` wait for each generation): `apply`'s work on
    documents already read (`mkd run` makes its one)."""
    for document in documents:
        upload_local_images(target, document, show_progress=show_progress)
    instances = [d for d in documents if d.kind == "Instance"]
    pools = [d for d in documents if d.kind == "Pool"]
    if len(pools) > 1:
        raise CliError("more than one Pool document", EXIT_INVALID)
    plan = [("~", "pool")] if pools else []
    plan += [_plan_line(target, d) for d in instances]
    gone = sorted(declared_names(target) - {d.name for d in instances}) if prune else []
    plan += [("-", f"delete {name}") for name in gone]
    for mark, text in plan:
        echo(f"{mark} {text}")
    if dry_run:
        return
    for document in pools:
        call(target, "PUT", "/v1/pool", json=document.body)
    generations: dict[str, int] = {}
    for document in instances:
        body = call(target, "PUT", f"/v1/instances/{document.name}", json=document.body).json()
        generations[document.name] = int(body.get("generation") or 0)
    for name in gone:
        call(target, "DELETE", f"/v1/instances/{name}")
    if not wait:
        return
    for name, generation in generations.items():
        call(target, "GET", f"/v1/instances/{name}/wait", params={"generation": generation, "timeout_s": WAIT_S},
             timeout=WAIT_S + 30)
        echo(f"ready {name} (generation {generation})")
    for name in gone:
        call(target, "GET", f"/v1/instances/{name}/wait", params={"deleted": "true", "timeout_s": WAIT_S},
             timeout=WAIT_S + 30)
        echo(f"deleted {name}")


def get_document(target: Target, name: str) -> dict[str, Any]:
    body: dict[str, Any] = call(target, "GET", f"/v1/instances/{name}", params={"format": "document"}).json()
    return body
