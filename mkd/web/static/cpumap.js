// The CPU map: every CPU of GET /v1/host's topology, grouped by NUMA node and LLC, coloured by
// the instance that owns it; free pool CPUs, host CPUs (outside the pool) and instance CPUs that
// lie outside the pool are told apart by pattern as well as colour. One tab stop for the whole
// map; the arrow keys move between CPUs (roving tabindex), Enter selects the owner.

import { $, element, ownerClass } from "./dom.js";
import { follow, select, store } from "./store.js";

let cells = new Map(); // cpu id -> {node: button, shown: "class|label"}
let onPick = () => {};

function build(topology) {
  const byNode = new Map();
  for (const cpu of [...topology.cpus].sort((a, b) => a.id - b.id)) {
    if (!byNode.has(cpu.numa_node)) byNode.set(cpu.numa_node, new Map());
    const byLlc = byNode.get(cpu.numa_node);
    if (!byLlc.has(cpu.llc)) byLlc.set(cpu.llc, []);
    byLlc.get(cpu.llc).push(cpu);
  }
  cells = new Map();
  const nodes = [];
  for (const [node, byLlc] of [...byNode].sort((a, b) => a[0] - b[0])) {
    const llcs = [];
    for (const [llc, cpus] of [...byLlc].sort((a, b) => a[0] - b[0])) {
      const grid = element("div", { class: "cpu-grid" });
      for (const cpu of cpus) {
        const button = element("button", { type: "button", class: "cpu", tabindex: "-1", "data-cpu": String(cpu.id) });
        cells.set(cpu.id, { node: button, shown: "" });
        grid.append(button);
      }
      const first = cpus[0].id;
      const last = cpus[cpus.length - 1].id;
      llcs.push(element("div", { class: "llc", role: "group", "aria-label": `NUMA node ${node}, LLC ${llc}` },
        element("p", { class: "group-label", "aria-hidden": "true" }, `LLC ${llc} · CPUs ${first}–${last}`), grid));
    }
    nodes.push(element("div", { class: "numa", role: "group", "aria-label": `NUMA node ${node}`, "data-testid": "cpu-numa" },
      element("h3", { class: "group-label" }, `NUMA node ${node}`), ...llcs));
  }
  $("cpu-map").replaceChildren(...nodes);
  const first = cells.values().next().value;
  if (first) first.node.tabIndex = 0;
}

function describe(cpuId, owner, inPool, free) {
  if (owner) {
    const where = inPool ? "" : ", outside the pool";
    return { kind: inPool ? "owned" : "owned-outside", label: `CPU ${cpuId}: ${owner.name} (instance ${owner.id}, ${owner.state})${where}` };
  }
  if (inPool && !free) return { kind: "pending", label: `CPU ${cpuId}: held by an instance not read yet` };
  if (inPool) return { kind: "free", label: `CPU ${cpuId}: free in the pool` };
  return { kind: "host", label: `CPU ${cpuId}: host (outside the pool)` };
}

function drawCpuMap(topics) {
  if (!store.host) return;
  if (topics.has("host") || cells.size === 0) build(store.host.topology);
  const owners = new Map();
  for (const instance of store.instances.values()) {
    for (const cpu of instance.resources.cpus) owners.set(cpu, instance);
  }
  const pool = new Set(store.pool ? store.pool.cpus : []);
  // While the instance list is still being read, a pool CPU that is not free but whose owner is
  // not known yet is drawn as held rather than free.
  const free = new Set(store.pool ? store.pool.free.cpus : []);
  const counts = { owned: 0, free: 0, host: 0 };
  for (const [cpuId, cell] of cells) {
    const owner = owners.get(cpuId);
    const { kind, label } = describe(cpuId, owner, pool.has(cpuId), free.has(cpuId));
    counts[kind === "owned-outside" || kind === "pending" ? "owned" : kind] += 1;
    const picked = owner && owner.id === store.selected;
    const className = `cpu ${kind}${owner ? ` ${ownerClass(owner.id)}` : ""}${picked ? " picked" : ""}`;
    const shown = `${className}|${label}`;
    if (cell.shown === shown) continue;
    cell.shown = shown;
    cell.node.className = className;
    cell.node.setAttribute("aria-label", label);
    cell.node.title = label;
    cell.node.dataset.owner = owner ? String(owner.id) : "";
    cell.node.dataset.kind = kind;
  }
  $("cpu-map").classList.toggle("has-selection", store.selected !== null);
  $("cpu-summary").textContent = `${cells.size} CPUs: ${counts.owned} held by instances, ${counts.free} free in the pool, ${counts.host} kept by the host`;
}

function showReadout(target) {
  const cell = target.closest && target.closest("button.cpu");
  if (cell) $("cpu-readout").textContent = cell.getAttribute("aria-label");
}

// Arrow keys: left/right by one CPU, up/down by one row of the CPU's LLC grid; Home/End.
function onKey(event) {
  const cell = event.target.closest("button.cpu");
  if (!cell) return;
  const order = [...cells.values()].map((c) => c.node);
  const index = order.indexOf(cell);
  const columns = getComputedStyle(cell.parentElement).gridTemplateColumns.split(" ").length || 1;
  const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -columns, ArrowDown: columns, Home: -index, End: order.length - 1 - index };
  if (!(event.key in moves)) return;
  event.preventDefault();
  const next = order[Math.max(0, Math.min(order.length - 1, index + moves[event.key]))];
  cell.tabIndex = -1;
  next.tabIndex = 0;
  next.focus();
}

function onClick(event) {
  const cell = event.target.closest("button.cpu");
  if (!cell) return;
  for (const c of cells.values()) c.node.tabIndex = -1;
  cell.tabIndex = 0;
  if (cell.dataset.owner) {
    const id = Number(cell.dataset.owner);
    select(id);
    onPick(id);
  }
}

export function setUpCpuMap({ reveal }) {
  onPick = reveal;
  const map = $("cpu-map");
  map.addEventListener("mouseover", (event) => showReadout(event.target));
  map.addEventListener("focusin", (event) => showReadout(event.target));
  map.addEventListener("keydown", onKey);
  map.addEventListener("click", onClick);
  follow(["host", "pool", "instances", "selection"], drawCpuMap);
}
