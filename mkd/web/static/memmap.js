// The memory map: the physical range that holds the pool, drawn to scale in three lanes — the
// pool's chunks (by NUMA node), each instance's chunks (in its colour) and the segments of loaded
// kimages (by kind). Wide unused gaps are cut out (see scaleFor). A block never shrinks below a readable minimum width (dashboard.css), so a
// 16 MiB chunk in a 60 GiB range still shows.

import { $, element, ownerClass } from "./dom.js";
import { formatBytes, hex } from "./format.js";
import { follow, select, store } from "./store.js";

const SEGMENT_KINDS = ["kernel", "initrd", "boot_params", "cmdline", "dtb", "purgatory", "control", "swap", "ima"];
let onPick = () => {};

function segmentClass(kind) {
  const index = SEGMENT_KINDS.indexOf(kind);
  return `seg-${index < 0 ? "other" : kind}`;
}

// The address ranges in use, as windows drawn to scale; a gap much wider than what is in use
// (a segment the loader put at the top of RAM, say) is cut out and drawn as a break, so the
// pool does not shrink to a sliver.
const BREAK_SHARE = 3; // % of the width a cut-out gap takes
const MIN_WINDOW_SHARE = 6; // % a window takes however small

function spans() {
  const found = [];
  for (const chunk of store.pool?.chunks || []) found.push([chunk.base, chunk.base + chunk.bytes]);
  for (const instance of store.instances.values()) {
    for (const chunk of instance.memory) found.push([chunk.base, chunk.base + chunk.bytes]);
    for (const segment of instance.kimage?.segments || []) found.push([segment.mem, segment.mem + segment.memsz]);
  }
  if (found.length === 0 && store.host) {
    const { pool_base: base, pool_bytes: bytes } = store.host.topology;
    if (bytes) found.push([base, base + bytes]);
  }
  return found;
}

function scaleFor(found) {
  if (found.length === 0) return null;
  const sorted = [...found].sort((a, b) => a[0] - b[0]);
  const merged = [];
  for (const [lo, hi] of sorted) {
    const last = merged[merged.length - 1];
    if (last && lo <= last[1]) last[1] = Math.max(last[1], hi);
    else merged.push([lo, hi]);
  }
  const used = merged.reduce((sum, [lo, hi]) => sum + (hi - lo), 0);
  const windows = [[...merged[0]]];
  for (const [lo, hi] of merged.slice(1)) {
    const last = windows[windows.length - 1];
    if (lo - last[1] > used) windows.push([lo, hi]); // a gap wider than all that is in use: cut it
    else last[1] = hi;
  }
  const room = 100 - BREAK_SHARE * (windows.length - 1);
  const total = windows.reduce((sum, [lo, hi]) => sum + (hi - lo), 0);
  let shares = windows.map(([lo, hi]) => Math.max(MIN_WINDOW_SHARE, ((hi - lo) / total) * room));
  const scaleDown = room / shares.reduce((a, b) => a + b, 0);
  shares = shares.map((share) => share * scaleDown);
  let at = 0;
  const pieces = windows.map(([lo, hi], index) => {
    const piece = { lo, hi, left: at, width: shares[index] };
    at += shares[index] + BREAK_SHARE;
    return piece;
  });
  return pieces;
}

// [left %, width %] of an address range, on the piece that holds its start.
function place(pieces, base, bytes) {
  const piece = pieces.find((p) => base >= p.lo && base < p.hi) || pieces[pieces.length - 1];
  const perByte = piece.width / (piece.hi - piece.lo);
  return [piece.left + (base - piece.lo) * perByte, Math.min(bytes, piece.hi - base) * perByte];
}

// label: a string, or for the thousands of instance blocks a function asked on hover only.
function block(pieces, base, bytes, className, label, attributes = {}) {
  const [left, width] = place(pieces, base, bytes);
  const node = element("div", { class: `block ${className}`, title: typeof label === "string" ? label : null, ...attributes });
  if (typeof label === "function") labels.set(node, label);
  node.style.setProperty("--left", `${left}%`);
  node.style.setProperty("--width", `${width}%`);
  return node;
}

const labels = new WeakMap(); // block -> () => its description

function labelOf(node) {
  const label = labels.get(node);
  if (label && !node.title) node.title = label();
  return node.title;
}

// Addresses above the lanes: where each window starts (when it is wide enough to carry a label),
// what each cut-out gap measures, and where the last window ends.
const LABELLED_SHARE = 20;

function axis(pieces) {
  const marks = [];
  const mark = (className, text, left) => {
    const node = element("span", { class: className }, text);
    node.style.setProperty("--left", `${left}%`);
    marks.push(node);
  };
  pieces.forEach((piece, index) => {
    if (index === 0 || piece.width >= LABELLED_SHARE) mark("mark", hex(piece.lo), piece.left);
    const next = pieces[index + 1];
    if (next) mark("cut", `gap ${formatBytes(next.lo - piece.hi)}`, next.left);
  });
  const last = pieces[pieces.length - 1];
  if (last.width >= LABELLED_SHARE) marks.push(element("span", { class: "mark end" }, hex(last.hi)));
  return element("div", { class: "axis", "aria-hidden": "true" }, element("span", {}), element("div", { class: "axis-track" }, ...marks));
}

function breaks(pieces) {
  return pieces.slice(0, -1).map((piece) => {
    const gap = element("div", { class: "break", "aria-hidden": "true" });
    gap.style.setProperty("--left", `${piece.left + piece.width}%`);
    gap.style.setProperty("--width", `${BREAK_SHARE}%`);
    return gap;
  });
}

function lane(pieces, name, testid, blocks) {
  const track = element("div", { class: "lane-track", role: "img" }, ...breaks(pieces), ...blocks);
  return [element("div", { class: "lane", "data-testid": testid }, element("span", { class: "lane-name" }, name), track), track];
}

// What is drawn, kept so that a change to a few instances redraws only their blocks.
const drawnMap = { scale: "", pieces: null, tracks: null, blocks: new Map(), selected: null };

function instanceBlocks(pieces, instance) {
  const picked = instance.id === store.selected ? " picked" : "";
  const chunks = instance.memory.map((chunk) => block(pieces, chunk.base, chunk.bytes, `${ownerClass(instance.id)}${picked}`,
    () => `${instance.name} (instance ${instance.id}): ${hex(chunk.base)}, ${formatBytes(chunk.bytes)}`,
    { "data-instance-id": String(instance.id) }));
  const segments = (instance.kimage?.segments || []).map((segment) => block(pieces, segment.mem, segment.memsz,
    `${segmentClass(segment.kind)}${picked}`,
    () => `${instance.name}: ${segment.kind} segment ${hex(segment.mem)}, ${formatBytes(segment.memsz)}`,
    { "data-instance-id": String(instance.id), "data-kind": segment.kind }));
  return { chunks, segments };
}

function rebuild(pieces) {
  const poolBlocks = (store.pool?.chunks || []).map((chunk) =>
    block(pieces, chunk.base, chunk.bytes, `pool node-${(chunk.numa_node ?? 0) % 4}`,
      `pool chunk ${hex(chunk.base)}, ${formatBytes(chunk.bytes)}${chunk.numa_node === null || chunk.numa_node === undefined ? "" : `, NUMA node ${chunk.numa_node}`}`));
  drawnMap.blocks = new Map();
  const chunks = [];
  const segments = [];
  for (const instance of store.instances.values()) {
    const made = instanceBlocks(pieces, instance);
    drawnMap.blocks.set(instance.id, made);
    chunks.push(...made.chunks);
    segments.push(...made.segments);
  }
  const [poolLane, poolTrack] = lane(pieces, "Pool", "memory-lane-pool", poolBlocks);
  const [instanceLane, instanceTrack] = lane(pieces, "Instances", "memory-lane-instances", chunks);
  const [segmentLane, segmentTrack] = lane(pieces, "Kimages", "memory-lane-segments", segments);
  drawnMap.tracks = { pool: poolTrack, instances: instanceTrack, segments: segmentTrack };
  $("memory-map").replaceChildren(axis(pieces), poolLane, instanceLane, segmentLane);
}

// Only the instances in `ids`: their old blocks out, their new ones in.
function patch(pieces, ids) {
  for (const id of ids) {
    const old = drawnMap.blocks.get(id);
    if (old) for (const node of [...old.chunks, ...old.segments]) node.remove();
    drawnMap.blocks.delete(id);
    const instance = store.instances.get(id);
    if (!instance) continue;
    const made = instanceBlocks(pieces, instance);
    drawnMap.blocks.set(id, made);
    drawnMap.tracks.instances.append(...made.chunks);
    drawnMap.tracks.segments.append(...made.segments);
  }
}

function markSelection() {
  for (const id of [drawnMap.selected, store.selected]) {
    const made = drawnMap.blocks.get(id);
    if (!made) continue;
    for (const node of [...made.chunks, ...made.segments]) node.classList.toggle("picked", id === store.selected);
  }
  drawnMap.selected = store.selected;
}

function describeLanes() {
  const { pool, instances, segments } = drawnMap.tracks;
  let chunkCount = 0;
  let segmentCount = 0;
  for (const made of drawnMap.blocks.values()) {
    chunkCount += made.chunks.length;
    segmentCount += made.segments.length;
  }
  const poolChunks = store.pool?.chunks || [];
  const poolBytes = poolChunks.reduce((sum, c) => sum + c.bytes, 0);
  pool.setAttribute("aria-label", `Pool: ${poolChunks.length} chunks, ${formatBytes(poolBytes)}`);
  instances.setAttribute("aria-label", `Instances: ${chunkCount} chunks of ${store.instances.size} instances`);
  segments.setAttribute("aria-label", `Kimages: ${segmentCount} segments of loaded kimages`);
}

function drawMemoryMap(topics, ids) {
  const pieces = scaleFor(spans());
  if (!pieces) {
    $("memory-map").replaceChildren(element("p", { class: "empty" }, "No pool memory yet."));
    drawnMap.scale = "";
    drawnMap.tracks = null;
    return;
  }
  const scale = JSON.stringify(pieces);
  const whole = !drawnMap.tracks || scale !== drawnMap.scale || topics.has("pool") || topics.has("host")
    || topics.has("all-instances");
  if (whole) rebuild(pieces);
  else patch(pieces, ids);
  drawnMap.scale = scale;
  markSelection();
  describeLanes();
  $("memory-map").classList.toggle("has-selection", store.selected !== null);
  drawSelection();
}

function drawSelection() {
  const instance = store.instances.get(store.selected);
  const text = $("memory-selection");
  if (!instance) {
    text.textContent = "Select an instance (its name in the table, or one of its CPUs) to highlight it in both maps.";
    return;
  }
  const chunks = instance.memory.map((c) => `${hex(c.base)} (${formatBytes(c.bytes)})`).join(", ") || "no memory";
  const kinds = instance.kimage ? `; kimage segments: ${instance.kimage.segments.map((s) => `${s.kind} at ${hex(s.mem)}`).join(", ")}` : "";
  text.textContent = `${instance.name} (instance ${instance.id}): ${chunks}${kinds}`;
}

function onClick(event) {
  const blockNode = event.target.closest(".block[data-instance-id]");
  if (!blockNode) return;
  const id = Number(blockNode.dataset.instanceId);
  select(id);
  onPick(id);
}

export function setUpMemoryMap({ reveal }) {
  onPick = reveal;
  const map = $("memory-map");
  map.addEventListener("click", onClick);
  map.addEventListener("mouseover", (event) => {
    const hovered = event.target.closest(".block");
    if (hovered) $("memory-readout").textContent = labelOf(hovered);
  });
  $("memory-legend").replaceChildren(...SEGMENT_KINDS.map((kind) =>
    element("li", {}, element("span", { class: `swatch ${segmentClass(kind)}`, "aria-hidden": "true" }), kind)));
  follow(["host", "pool", "instances", "selection"], drawMemoryMap);
}
