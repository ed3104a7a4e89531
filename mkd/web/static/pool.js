// Host and pool summary, and the pool editor (preview, apply with If-Match).

import { ApiError, request, send } from "./api.js";
import { $, element } from "./dom.js";
import { formatBytes, formatCpus, hex, mibOf, parseCpus, parseInteger, parseMiB } from "./format.js";
import { showProblem } from "./messages.js";
import { changed, store } from "./store.js";

const CAPABILITY_LABELS = {
  halt: "halt (stop)",
  per_instance_unload: "per-instance unload",
  hot_update: "hot update",
  numa: "NUMA placement",
  active_reported: "ACTIVE reported by the kernel",
};
const POOL_REFRESH_DELAY_MS = 150;

let formDirty = false; // edited since it was filled: background refreshes leave it alone

function renderHost(host) {
  $("host-backend").textContent = host.backend;
  $("host-profile").textContent = host.kernel_profile;
  $("host-arch").textContent = host.arch;
  $("host-cpus").textContent = `${host.topology.cpus.length} (${host.topology.numa_nodes} NUMA node${host.topology.numa_nodes === 1 ? "" : "s"})`;
  $("host-memory").textContent = formatBytes(host.topology.memory_bytes);
  $("host-capabilities").replaceChildren(
    ...Object.entries(host.capabilities).map(([name, present]) =>
      element("li", { "data-testid": `capability-${name}`, "data-present": String(present), class: present ? "yes" : "no" },
        `${CAPABILITY_LABELS[name] || name}: ${present ? "yes" : "no"}`)),
  );
}

export async function loadHost() {
  store.host = await request("GET", "/v1/host");
  renderHost(store.host);
  changed("host");
}

function renderPool(pool) {
  $("pool-cpus").textContent = formatCpus(pool.cpus);
  $("pool-memory").textContent = pool.memory_bytes
    ? `${formatBytes(pool.memory_bytes)} at ${hex(pool.memory_base)}`
    : "none (apply a baseline with PUT /v1/pool)";
  $("pool-free-cpus").textContent = formatCpus(pool.free.cpus);
  $("pool-free-memory").textContent = formatBytes(pool.free.memory_bytes);
}

// Read the pool; the editor follows unless the user has edited it (or `refill` says to anyway).
export async function loadPool({ refill = false } = {}) {
  const { body, etag } = await send("GET", "/v1/pool");
  store.pool = body;
  renderPool(body);
  changed("pool");
  if (refill || !formDirty) fillForm(body, etag);
}

let poolTimer = null;
// Several events often arrive together (a device-tree create); one pool read covers them all.
export function schedulePoolRefresh() {
  clearTimeout(poolTimer);
  poolTimer = setTimeout(() => loadPool().catch((error) => showProblem(error, "Reading the pool")), POOL_REFRESH_DELAY_MS);
}

function fillForm(pool, etag) {
  store.poolEtag = etag;
  formDirty = false;
  const defined = pool.memory_bytes > 0 || pool.cpus.length > 0;
  $("pool-form-cpus").value = pool.cpus.length ? formatCpus(pool.cpus) : "";
  // Without a baseline yet, offer the host's reserved range (mkkernel_pool=) as the start.
  const base = defined || !store.host ? pool.memory_base : store.host.topology.pool_base ?? pool.memory_base;
  $("pool-form-base").value = hex(base);
  $("pool-form-memory").value = defined ? mibOf(pool.memory_bytes) : "";
  $("pool-form-llc").value = pool.llc_way_mask === null || pool.llc_way_mask === undefined ? "" : hex(pool.llc_way_mask);
  $("pool-form").dataset.etag = etag || "";
}

function formBody() {
  const form = $("pool-form");
  const body = {
    cpus: parseCpus(form.elements.cpus.value),
    memory_base: parseInteger(form.elements.memory_base.value, "memory base"),
    memory_bytes: parseMiB(form.elements.memory_mib.value, "pool memory"),
    llc_way_mask: parseInteger(form.elements.llc_way_mask.value, "LLC way mask"),
    devices: store.pool ? [...store.pool.devices] : [], // not edited here: kept as they are
  };
  if (body.memory_base === null) throw new ApiError({ title: "Invalid memory base", detail: "the memory base is required" });
  return body;
}

function diffItems(diff, body) {
  const items = [];
  const add = (key, text) => items.push(element("li", { "data-testid": `pool-diff-${key}` }, text));
  if (diff.created) add("created", "a first baseline (no pool was defined)");
  if (diff.cpus_added.length) add("cpus-added", `CPUs added: ${formatCpus(diff.cpus_added)}`);
  if (diff.cpus_removed.length) add("cpus-removed", `CPUs removed: ${formatCpus(diff.cpus_removed)}`);
  if (diff.memory_base_changed) add("memory-base", `memory base moves to ${hex(body.memory_base)}`);
  if (diff.memory_bytes_delta) {
    const how = diff.memory_bytes_delta > 0 ? "grows" : "shrinks";
    add("memory", `memory ${how} by ${formatBytes(Math.abs(diff.memory_bytes_delta))} (to ${formatBytes(body.memory_bytes)})`);
  }
  if (diff.llc_changed) add("llc", `LLC way mask becomes ${body.llc_way_mask === null ? "unset" : hex(body.llc_way_mask)}`);
  if (diff.devices_added.length) add("devices-added", `devices added: ${diff.devices_added.join(", ")}`);
  if (diff.devices_removed.length) add("devices-removed", `devices removed: ${diff.devices_removed.join(", ")}`);
  return items;
}

function showDiff(result, body, applied) {
  const box = $("pool-diff");
  box.dataset.changed = String(result.changed);
  box.dataset.applied = String(applied);
  let summary;
  if (!result.changed) summary = applied ? "Nothing to apply: the pool already matches." : "Preview: no change, the pool already matches.";
  else summary = applied ? "Applied:" : "Preview (nothing changed yet):";
  $("pool-diff-summary").textContent = summary;
  $("pool-diff-items").replaceChildren(...(result.changed ? diffItems(result.diff, body) : []));
  box.hidden = false;
}

function hideDiff() {
  $("pool-diff").hidden = true;
}

function setButtons(disabled) {
  for (const testid of ["pool-preview", "pool-apply", "pool-reset"]) $(testid).disabled = disabled;
}

// PUT /v1/pool (a dry run for the preview), conditional on the pool the form was filled from.
async function submit(dryRun) {
  const form = $("pool-form");
  if (!form.reportValidity()) return;
  setButtons(true);
  let body;
  try {
    body = formBody();
    const headers = store.poolEtag ? { "If-Match": store.poolEtag } : {};
    const { body: result } = await send("PUT", `/v1/pool${dryRun ? "?dry_run=true" : ""}`, { body, headers });
    if (!dryRun) await loadPool({ refill: true });
    showDiff(result, body, !dryRun);
  } catch (error) {
    showProblem(error, dryRun ? "Preview pool" : "Apply pool");
    if (error instanceof ApiError && error.problem.status === 412) {
      // Someone changed the pool since the form was filled: show what it is now.
      hideDiff();
      await loadPool({ refill: true }).catch((again) => showProblem(again, "Reading the pool"));
    }
  } finally {
    setButtons(false);
  }
}

export function setUpPoolEditor() {
  $("pool-form").addEventListener("input", () => {
    formDirty = true;
  });
  $("pool-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submit(false);
  });
  $("pool-preview").addEventListener("click", () => submit(true));
  $("pool-reset").addEventListener("click", () => {
    hideDiff();
    loadPool({ refill: true }).catch((error) => showProblem(error, "Reading the pool"));
  });
}
