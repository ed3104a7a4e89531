// The memory map: the physical range that holds the pool, drawn to scale in three lanes — the
// pool's chunks (by NUMA node), each instance's chunks (in its colour) and the segments of loaded
// kimages (by kind). A block never shrinks below a readable minimum width (dashboard.css), so a
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

function extent() {
  const spans = [];
  for (const chunk of store.pool?.chunks || []) spans.push([chunk.base, chunk.base + chunk.bytes]);
  for (const instance of store.instances.values()) {
    for (const chunk of instance.memory) spans.push([chunk.base, chunk.base + chunk.bytes]);
    for (const segment of instance.kimage?.segments || []) spans.push([segment.mem, segment.mem + segment.memsz]);
  }
  if (spans.length === 0 && store.host) {
    const { pool_base: base, pool_bytes: bytes } = store.host.topology;
    if (bytes) spans.push([base, base + bytes]);
  }
  if (spans.length === 0) return null;
  return [Math.min(...spans.map((s) => s[0])), Math.max(...spans.map((s) => s[1]))];
}

function block(range, base, bytes, className, label, attributes = {}) {
  const [lo, hi] = range;
  const node = element("div", { class: `block ${className}`, title: label, ...attributes });
  node.style.setProperty("--left", `${((base - lo) / (hi - lo)) * 100}%`);
  node.style.setProperty("--width", `${(bytes / (hi - lo)) * 100}%`);
  return node;
}

function lane(name, testid, blocks, summary) {
  return element("div", { class: "lane", "data-testid": testid },
    element("span", { class: "lane-name" }, name),
    element("div", { class: "lane-track", role: "img", "aria-label": `${name}: ${summary}` }, ...blocks));
}

function draw() {
  const range = extent();
  const map = $("memory-map");
  if (!range) {
    map.replaceChildren(element("p", { class: "empty" }, "No pool memory yet."));
    return;
  }
  const poolBlocks = (store.pool?.chunks || []).map((chunk) =>
    block(range, chunk.base, chunk.bytes, `pool node-${(chunk.numa_node ?? 0) % 4}`,
      `pool chunk ${hex(chunk.base)}, ${formatBytes(chunk.bytes)}${chunk.numa_node === null || chunk.numa_node === undefined ? "" : `, NUMA node ${chunk.numa_node}`}`));
  const instanceBlocks = [];
  const segmentBlocks = [];
  let segments = 0;
  for (const instance of store.instances.values()) {
    const picked = instance.id === store.selected ? " picked" : "";
    for (const chunk of instance.memory) {
      instanceBlocks.push(block(range, chunk.base, chunk.bytes, `${ownerClass(instance.id)}${picked}`,
        `${instance.name} (instance ${instance.id}): ${hex(chunk.base)}, ${formatBytes(chunk.bytes)}`,
        { "data-instance-id": String(instance.id) }));
    }
    for (const segment of instance.kimage?.segments || []) {
      segments += 1;
      segmentBlocks.push(block(range, segment.mem, segment.memsz, `${segmentClass(segment.kind)}${picked}`,
        `${instance.name}: ${segment.kind} segment ${hex(segment.mem)}, ${formatBytes(segment.memsz)}`,
        { "data-instance-id": String(instance.id), "data-kind": segment.kind }));
    }
  }
  const poolBytes = (store.pool?.chunks || []).reduce((sum, c) => sum + c.bytes, 0);
  map.replaceChildren(
    element("div", { class: "axis", "aria-hidden": "true" }, element("span", {}, hex(range[0])),
      element("span", {}, formatBytes(range[1] - range[0])), element("span", {}, hex(range[1]))),
    lane("Pool", "memory-lane-pool", poolBlocks, `${poolBlocks.length} chunks, ${formatBytes(poolBytes)}`),
    lane("Instances", "memory-lane-instances", instanceBlocks, `${instanceBlocks.length} chunks of ${store.instances.size} instances`),
    lane("Kimages", "memory-lane-segments", segmentBlocks, `${segments} segments of loaded kimages`),
  );
  map.classList.toggle("has-selection", store.selected !== null);
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
    if (hovered) $("memory-readout").textContent = hovered.title;
  });
  $("memory-legend").replaceChildren(...SEGMENT_KINDS.map((kind) =>
    element("li", {}, element("span", { class: `swatch ${segmentClass(kind)}`, "aria-hidden": "true" }), kind)));
  follow(["host", "pool", "instances", "selection"], draw);
}
