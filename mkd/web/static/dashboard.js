// The mkd dashboard: host and pool summary, instances with their lifecycle actions, the image
// store, and live updates from GET /v1/events. Everything is read from and sent to /v1; the
// daemon stays the only judge of what is allowed, the page only greys out what cannot succeed.

import { ApiError, listAll, request, send, uploadImage } from "./api.js";

// States from which each action can reach the kernel: the Allowed entries of the daemon's
// transition table (mkd/domain/states.py). Anything else would only earn a refusal.
const ALLOWED_STATES = {
  load: ["READY", "FAILED"],
  unload: ["LOADED", "FAILED", "ACTIVE"], // from ACTIVE only with force
  start: ["LOADED", "FAILED"],
  stop: ["ACTIVE"],
  stop_force: ["ACTIVE", "LOADED", "FAILED"],
  delete: ["EMPTY", "READY", "FAILED"],
  resize: ["EMPTY", "READY", "LOADED", "ACTIVE"], // PATCH: FAILED is EBUSY, LOADING is in flight
};
// Actions that need a host capability (GET /v1/host): rfc-v2 has no halt command and cannot
// update an instance's resources.
const REQUIRED_CAPABILITY = { stop: "halt", stop_force: "halt", resize: "hot_update" };
const MISSING_CAPABILITY = {
  halt: "has no halt command",
  hot_update: "cannot update an instance's resources (no hot update)",
};
const CAPABILITY_LABELS = {
  halt: "halt (stop)",
  per_instance_unload: "per-instance unload",
  hot_update: "hot update",
  numa: "NUMA placement",
  active_reported: "ACTIVE reported by the kernel",
};
const EVENT_TYPES = ["created", "state", "refused", "deleted", "reconciled", "reset"];
const RECONNECT_DELAY_MS = 2000;
const POOL_REFRESH_DELAY_MS = 150;
const MiB = 1024 * 1024;
const FDT_MAGIC = [0xd0, 0x0d, 0xfe, 0xed];

const view = {
  host: null,
  instances: new Map(), // id -> instance body
  goneUids: new Set(), // deleted instances: a late reply about them must not bring them back
  busy: new Map(), // id -> what is in flight ("starting…")
  images: [],
  lastEventId: null,
  loadTarget: null, // the instance the load dialog is for
  resizeTarget: null, // {id, etag} of the instance the resize dialog was filled from
  pool: null, // the pool the editor was filled from, and its ETag (If-Match when applying)
  poolEtag: null,
  poolFormDirty: false, // edited since it was filled: background refreshes leave it alone
};

const $ = (testid, root = document) => root.querySelector(`[data-testid="${testid}"]`);

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) node.append(child); // strings become text nodes: no markup injection
  return node;
}

// ---- formatting ---------------------------------------------------------------------------------

function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  // Exact while the number stays short (3328 MiB, not 3.3 GiB): operators compare these with
  // what they asked for.
  while (value >= 1024 && unit < units.length - 1 && value % 1024 === 0) {
    value /= 1024;
    unit += 1;
  }
  if (value < 100000) return `${value} ${units[unit]}`;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

// [2,3,4,8] -> "2-4,8"
function formatCpus(cpus) {
  if (!cpus || cpus.length === 0) return "none";
  const sorted = [...cpus].sort((a, b) => a - b);
  const ranges = [];
  let first = sorted[0];
  let last = first;
  for (const cpu of sorted.slice(1)) {
    if (cpu === last + 1) {
      last = cpu;
      continue;
    }
    ranges.push(first === last ? `${first}` : `${first}-${last}`);
    first = last = cpu;
  }
  ranges.push(first === last ? `${first}` : `${first}-${last}`);
  return ranges.join(",");
}

// "2-4,8" -> [2,3,4,8]; throws ApiError-shaped problems so the message area can show them.
function parseCpus(text) {
  const cpus = [];
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const match = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!match) throw new ApiError({ title: "Invalid CPU list", detail: `${JSON.stringify(part)} is not a CPU id or range` });
    const from = Number(match[1]);
    const to = match[2] === undefined ? from : Number(match[2]);
    if (to < from || to - from > 8192) throw new ApiError({ title: "Invalid CPU list", detail: `bad range ${part}` });
    for (let cpu = from; cpu <= to; cpu += 1) cpus.push(cpu);
  }
  return cpus;
}

function hex(value) {
  return `0x${value.toString(16)}`;
}

// "0x1_0000_0000", "4294967296" -> 4294967296; "" -> null. Exact integers only.
function parseInteger(text, what) {
  const cleaned = text.trim().replace(/_/g, "");
  if (!cleaned) return null;
  let value = NaN;
  if (/^0x[0-9a-f]+$/i.test(cleaned)) value = parseInt(cleaned.slice(2), 16);
  else if (/^\d+$/.test(cleaned)) value = Number(cleaned);
  if (!Number.isSafeInteger(value)) {
    throw new ApiError({ title: `Invalid ${what}`, detail: `${JSON.stringify(text.trim())} is not a decimal or 0x hexadecimal integer` });
  }
  return value;
}

// "256" MiB -> bytes; fractions of a MiB are kept to the byte.
function parseMiB(text, what) {
  const mib = Number(String(text).trim());
  if (String(text).trim() === "" || !Number.isFinite(mib) || mib < 0) {
    throw new ApiError({ title: `Invalid ${what}`, detail: `${JSON.stringify(String(text))} is not a size in MiB` });
  }
  return Math.round(mib * MiB);
}

function mibOf(bytes) {
  return String(bytes / MiB); // exact for whole MiB, else a fraction that parseMiB rounds back
}

// ---- messages -----------------------------------------------------------------------------------

function showProblem(error, context) {
  const problem = error instanceof ApiError ? error.problem : { title: "Unexpected error", detail: String(error) };
  const box = $("message");
  $("message-title").textContent = context ? `${context}: ${problem.title || "refused"}` : problem.title || "Refused";
  $("message-errno").textContent = problem.errno
    ? `${problem.errno}${problem.errno_value !== undefined ? ` (${problem.errno_value})` : ""}`
    : problem.status ? `HTTP ${problem.status}` : "";
  $("message-detail").textContent = problem.detail || "";
  box.dataset.status = problem.status ?? "";
  box.hidden = false;
}

function clearProblem() {
  $("message").hidden = true;
}

// ---- host and pool ------------------------------------------------------------------------------

function renderHost(host) {
  $("host-backend").textContent = host.backend;
  $("host-profile").textContent = host.kernel_profile;
  $("host-arch").textContent = host.arch;
  $("host-cpus").textContent = `${host.topology.cpus.length} (${host.topology.numa_nodes} NUMA node${host.topology.numa_nodes === 1 ? "" : "s"})`;
  $("host-memory").textContent = formatBytes(host.topology.memory_bytes);
  const list = $("host-capabilities");
  list.replaceChildren(
    ...Object.entries(host.capabilities).map(([name, present]) =>
      element("li", { "data-testid": `capability-${name}`, "data-present": String(present), class: present ? "yes" : "no" },
        `${CAPABILITY_LABELS[name] || name}: ${present ? "yes" : "no"}`)),
  );
}

async function loadHost() {
  view.host = await request("GET", "/v1/host");
  renderHost(view.host);
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
async function loadPool({ refill = false } = {}) {
  const { body, etag } = await send("GET", "/v1/pool");
  renderPool(body);
  if (refill || !view.poolFormDirty) fillPoolForm(body, etag);
}

// ---- pool editor --------------------------------------------------------------------------------

function fillPoolForm(pool, etag) {
  view.pool = pool;
  view.poolEtag = etag;
  view.poolFormDirty = false;
  const defined = pool.memory_bytes > 0 || pool.cpus.length > 0;
  $("pool-form-cpus").value = pool.cpus.length ? formatCpus(pool.cpus) : "";
  // Without a baseline yet, offer the host's reserved range (mkkernel_pool=) as the start.
  const base = defined || !view.host ? pool.memory_base : view.host.topology.pool_base ?? pool.memory_base;
  $("pool-form-base").value = hex(base);
  $("pool-form-memory").value = defined ? mibOf(pool.memory_bytes) : "";
  $("pool-form-llc").value = pool.llc_way_mask === null || pool.llc_way_mask === undefined ? "" : hex(pool.llc_way_mask);
  $("pool-form").dataset.etag = etag || "";
}

function poolBody() {
  const form = $("pool-form");
  const body = {
    cpus: parseCpus(form.elements.cpus.value),
    memory_base: parseInteger(form.elements.memory_base.value, "memory base"),
    memory_bytes: parseMiB(form.elements.memory_mib.value, "pool memory"),
    llc_way_mask: parseInteger(form.elements.llc_way_mask.value, "LLC way mask"),
    devices: view.pool ? [...view.pool.devices] : [], // not edited here: kept as they are
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

function showPoolDiff(result, body, applied) {
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

function hidePoolDiff() {
  $("pool-diff").hidden = true;
}

function setPoolButtons(disabled) {
  for (const testid of ["pool-preview", "pool-apply", "pool-reset"]) $(testid).disabled = disabled;
}

// PUT /v1/pool (a dry run for the preview), conditional on the pool the form was filled from.
async function submitPool(dryRun) {
  const form = $("pool-form");
  if (!form.reportValidity()) return;
  setPoolButtons(true);
  let body;
  try {
    body = poolBody();
    const headers = view.poolEtag ? { "If-Match": view.poolEtag } : {};
    const { body: result } = await send("PUT", `/v1/pool${dryRun ? "?dry_run=true" : ""}`, { body, headers });
    if (!dryRun) await loadPool({ refill: true });
    showPoolDiff(result, body, !dryRun);
  } catch (error) {
    showProblem(error, dryRun ? "Preview pool" : "Apply pool");
    if (error instanceof ApiError && error.problem.status === 412) {
      // Someone changed the pool since the form was filled: show what it is now.
      hidePoolDiff();
      await loadPool({ refill: true }).catch((again) => showProblem(again, "Reading the pool"));
    }
  } finally {
    setPoolButtons(false);
  }
}

let poolTimer = null;
// Several events often arrive together (a device-tree create); one pool read covers them all.
function schedulePoolRefresh() {
  clearTimeout(poolTimer);
  poolTimer = setTimeout(() => loadPool().catch((error) => showProblem(error, "Reading the pool")), POOL_REFRESH_DELAY_MS);
}

// ---- instances ----------------------------------------------------------------------------------

function refusal(action, instance) {
  if (view.busy.has(instance.id)) return "another action on this instance is in progress";
  const capability = REQUIRED_CAPABILITY[action];
  if (capability && view.host && !view.host.capabilities[capability]) {
    return `the ${view.host.kernel_profile} kernel ${MISSING_CAPABILITY[capability] || `lacks ${capability}`}`;
  }
  if (!ALLOWED_STATES[action].includes(instance.state)) return `not possible in state ${instance.state}`;
  return null;
}

function actionButton(instance, action, label) {
  const reason = refusal(action, instance);
  const button = element("button", {
    type: "button",
    "data-testid": `action-${action.replace("_", "-")}`,
    "data-action": action,
    "aria-label": `${label} ${instance.name}`,
    disabled: reason !== null,
    title: reason,
  }, label);
  return button;
}

function renderKimage(kimage) {
  if (!kimage) return "—";
  const count = kimage.segments.length;
  return `${kimage.loader}, ${count} segment${count === 1 ? "" : "s"}`;
}

function renderRow(instance) {
  const busy = view.busy.get(instance.id);
  const stateCell = element("td", {},
    element("span", { class: `state state-${instance.state}`, "data-testid": "instance-state", title: instance.failure }, instance.state));
  if (busy) stateCell.append(" ", element("span", { class: "busy", "data-testid": "instance-busy" }, busy));
  const kimageCell = element("td", { "data-testid": "instance-kimage", title: instance.kimage ? `cmdline: ${instance.kimage.cmdline}` : null },
    renderKimage(instance.kimage));
  const unloadLabel = instance.state === "ACTIVE" ? "Force unload" : "Unload";
  const actions = element("td", {}, element("div", { class: "actions" },
    actionButton(instance, "load", "Load…"),
    actionButton(instance, "resize", "Resize…"),
    actionButton(instance, "unload", unloadLabel),
    actionButton(instance, "start", "Start"),
    actionButton(instance, "stop", "Stop"),
    actionButton(instance, "stop_force", "Force stop"),
    actionButton(instance, "delete", "Delete")));
  return element("tr", {
    "data-testid": "instance-row",
    "data-instance-id": String(instance.id),
    "data-name": instance.name,
    "data-state": instance.state,
    "aria-busy": busy ? "true" : null,
  },
  element("td", { "data-testid": "instance-id" }, String(instance.id)),
  element("th", { scope: "row", "data-testid": "instance-name" }, instance.name),
  stateCell,
  element("td", { "data-testid": "instance-kernel-state" }, instance.kernel_state),
  element("td", { "data-testid": "instance-cpus" }, formatCpus(instance.resources.cpus)),
  element("td", { "data-testid": "instance-memory" }, formatBytes(instance.resources.memory_bytes)),
  kimageCell,
  actions);
}

function rowFor(id) {
  return $("instances-body").querySelector(`tr[data-instance-id="${id}"]`);
}

function updateEmptyNotice() {
  $("instances-empty").hidden = view.instances.size > 0;
}

function drawInstance(id) {
  const instance = view.instances.get(id);
  const existing = rowFor(id);
  if (!instance) {
    existing?.remove();
    updateEmptyNotice();
    return;
  }
  const row = renderRow(instance);
  if (existing) {
    existing.replaceWith(row);
  } else {
    // Keep rows in id order, as GET /v1/instances lists them.
    const after = [...$("instances-body").rows].find((r) => Number(r.dataset.instanceId) > id);
    $("instances-body").insertBefore(row, after || null);
  }
  updateEmptyNotice();
}

function redrawAllInstances() {
  $("instances-body").replaceChildren(...[...view.instances.keys()].sort((a, b) => a - b).map((id) => renderRow(view.instances.get(id))));
  updateEmptyNotice();
}

// Record an instance body from any source, unless it is older than what is shown: replies to
// concurrent reads can arrive out of order, and `version` increases with every change.
function applyInstance(instance) {
  if (view.goneUids.has(instance.uid)) return;
  const shown = view.instances.get(instance.id);
  if (shown && shown.uid === instance.uid && shown.version > instance.version) return;
  view.instances.set(instance.id, instance);
  drawInstance(instance.id);
}

function forgetInstance(id, uid) {
  if (uid) view.goneUids.add(uid);
  const shown = view.instances.get(id);
  if (shown && (!uid || shown.uid === uid)) {
    view.instances.delete(id);
    view.busy.delete(id);
    drawInstance(id);
  }
}

async function refreshInstance(id) {
  try {
    applyInstance(await request("GET", `/v1/instances/${id}`));
  } catch (error) {
    if (error instanceof ApiError && error.problem.status === 404) {
      forgetInstance(id, null);
    } else {
      showProblem(error, `Reading instance ${id}`);
    }
  }
}

async function loadInstances() {
  const items = await listAll("/v1/instances");
  const fresh = new Map();
  for (const item of items) {
    if (view.goneUids.has(item.uid)) continue;
    const shown = view.instances.get(item.id);
    // A reply read while the list was in flight may be newer than the list's copy.
    fresh.set(item.id, shown && shown.uid === item.uid && shown.version > item.version ? shown : item);
  }
  view.instances = fresh;
  redrawAllInstances();
}

const ACTION_PROGRESS = {
  load: "loading…", unload: "unloading…", start: "starting…", stop: "stopping…", stop_force: "stopping…", delete: "deleting…",
  resize: "resizing…",
};

// Run one action against the daemon, showing it in progress on the row meanwhile.
async function perform(instance, action, method, path, body, headers) {
  view.busy.set(instance.id, ACTION_PROGRESS[action]);
  drawInstance(instance.id);
  try {
    const result = await request(method, path, body, headers);
    view.busy.delete(instance.id);
    if (action === "delete") {
      forgetInstance(instance.id, instance.uid);
      schedulePoolRefresh();
    } else {
      applyInstance(result);
      if (action === "resize") schedulePoolRefresh(); // what is free changed
    }
  } catch (error) {
    view.busy.delete(instance.id);
    showProblem(error, `${action.replace("_", " ")} ${instance.name}`);
    await refreshInstance(instance.id); // a refusal may mean the row was stale
  } finally {
    drawInstance(instance.id);
  }
}

function onInstanceAction(event) {
  const button = event.target.closest("button[data-action]");
  if (!button || button.disabled) return;
  const id = Number(button.closest("tr").dataset.instanceId);
  const instance = view.instances.get(id);
  if (!instance) return;
  const base = `/v1/instances/${id}`;
  switch (button.dataset.action) {
    case "load":
      openLoadDialog(instance);
      break;
    case "resize":
      openResizeDialog(instance);
      break;
    case "unload":
      if (instance.state === "ACTIVE" && !window.confirm(`Force unload the running instance ${instance.name}?`)) return;
      perform(instance, "unload", "POST", `${base}/unload`, { force: instance.state === "ACTIVE" });
      break;
    case "start":
      perform(instance, "start", "POST", `${base}/start`, {});
      break;
    case "stop":
      perform(instance, "stop", "POST", `${base}/stop`, { force: false });
      break;
    case "stop_force":
      if (!window.confirm(`Force stop ${instance.name} without waiting for it to shut down?`)) return;
      perform(instance, "stop_force", "POST", `${base}/stop`, { force: true });
      break;
    case "delete":
      if (!window.confirm(`Delete instance ${instance.name}?`)) return;
      perform(instance, "delete", "DELETE", base);
      break;
    default:
      break;
  }
}

async function onCreate(event) {
  event.preventDefault();
  const form = event.target;
  const data = new FormData(form);
  const resources = { memory_bytes: Number(data.get("memory_mib")) * 1024 * 1024 };
  const submit = $("create-submit");
  try {
    const cpuText = String(data.get("cpus") || "").trim();
    const cpuCount = String(data.get("cpu_count") || "").trim();
    if (cpuText) resources.cpus = parseCpus(cpuText);
    if (cpuCount) resources.cpu_count = Number(cpuCount);
    submit.disabled = true;
    applyInstance(await request("POST", "/v1/instances", { name: String(data.get("name")), resources }));
    form.reset();
    schedulePoolRefresh();
  } catch (error) {
    showProblem(error, "Create instance");
  } finally {
    submit.disabled = false;
  }
}

// POST /v1/instances with a device tree: the FDT magic decides between DTB and DTS, as the
// daemon's own parser does; the answer lists every instance created (all or nothing).
async function onCreateFromPlan(event) {
  event.preventDefault();
  const form = event.target;
  const file = $("plan-file").files[0];
  if (!file) return;
  const status = $("plan-status");
  const submit = $("plan-submit");
  submit.disabled = true;
  status.textContent = `Creating from ${file.name}…`;
  try {
    const bytes = new Uint8Array(await file.arrayBuffer());
    const isDtb = FDT_MAGIC.every((byte, index) => bytes[index] === byte);
    const { body } = await send("POST", "/v1/instances", { bytes, contentType: isDtb ? "application/x-dtb" : "text/x-dts" });
    for (const instance of body.items) applyInstance(instance);
    const names = body.items.map((instance) => `${instance.name} (id ${instance.id})`).join(", ");
    status.textContent = `Created ${body.items.length} instance${body.items.length === 1 ? "" : "s"} from ${file.name}: ${names}`;
    form.reset();
    schedulePoolRefresh();
  } catch (error) {
    status.textContent = `Nothing created from ${file.name}`;
    showProblem(error, "Create from plan");
  } finally {
    submit.disabled = false;
  }
}

// ---- images -------------------------------------------------------------------------------------

function renderImages() {
  $("images-body").replaceChildren(...view.images.map((image) => element("tr", { "data-testid": "image-row", "data-sha256": image.sha256 },
    element("td", {}, element("code", { title: image.sha256 }, image.sha256.slice(0, 16) + "…")),
    element("td", { "data-testid": "image-format" }, image.format),
    element("td", {}, formatBytes(image.size)),
    element("td", {}, element("button", {
      type: "button", "data-testid": "image-delete", "data-sha256": image.sha256, "aria-label": `Delete image ${image.sha256.slice(0, 12)}`,
    }, "Delete")))));
  $("images-empty").hidden = view.images.length > 0;
}

async function loadImages() {
  view.images = await listAll("/v1/images");
  renderImages();
}

async function onImageDelete(event) {
  const button = event.target.closest("button[data-testid=image-delete]");
  if (!button) return;
  const sha = button.dataset.sha256;
  if (!window.confirm(`Delete image ${sha.slice(0, 12)}…?`)) return;
  button.disabled = true;
  try {
    await request("DELETE", `/v1/images/${sha}`);
  } catch (error) {
    showProblem(error, "Delete image");
  }
  await loadImages().catch((error) => showProblem(error, "Listing images"));
}

async function onUpload(event) {
  event.preventDefault();
  const file = $("upload-file").files[0];
  if (!file) return;
  const progress = $("upload-progress");
  const status = $("upload-status");
  const submit = $("upload-submit");
  submit.disabled = true;
  progress.hidden = false;
  progress.value = 0;
  status.textContent = `Uploading ${file.name}…`;
  try {
    const { image, created } = await uploadImage(file, (fraction) => {
      if (fraction === null) {
        progress.removeAttribute("value"); // indeterminate
      } else {
        progress.value = Math.round(fraction * 100);
        status.textContent = `Uploading ${file.name}: ${progress.value}%`;
      }
    });
    progress.value = 100;
    status.textContent = `${created ? "Stored" : "Already stored"}: ${file.name} (${image.format}, ${image.sha256.slice(0, 12)}…)`;
    event.target.reset();
    await loadImages();
  } catch (error) {
    status.textContent = `Upload of ${file.name} failed`;
    showProblem(error, "Upload image");
  } finally {
    submit.disabled = false;
  }
}

// ---- load dialog --------------------------------------------------------------------------------

function imageOption(image) {
  return element("option", { value: image.sha256 }, `${image.sha256.slice(0, 12)}… (${image.format}, ${formatBytes(image.size)})`);
}

async function openLoadDialog(instance) {
  view.loadTarget = instance.id;
  $("load-target").textContent = instance.name;
  try {
    await loadImages(); // another client may have uploaded since the page loaded
  } catch (error) {
    showProblem(error, "Listing images");
  }
  const kernels = view.images.filter((i) => i.format !== "initrd");
  const initrds = view.images.filter((i) => i.format === "initrd" || i.format === "unknown");
  $("load-kernel").replaceChildren(...(kernels.length ? kernels : view.images).map(imageOption));
  $("load-initrd").replaceChildren(element("option", { value: "" }, "none"), ...initrds.map(imageOption));
  $("load-submit").disabled = view.images.length === 0;
  $("load-submit").title = view.images.length === 0 ? "upload a kernel image first" : "";
  $("load-dialog").showModal();
}

function onLoadSubmit(event) {
  event.preventDefault();
  const dialog = $("load-dialog");
  const instance = view.instances.get(view.loadTarget);
  const data = new FormData(event.target);
  dialog.close();
  if (!instance) return;
  const body = { kernel: String(data.get("kernel")) };
  if (data.get("initrd")) body.initrd = String(data.get("initrd"));
  if (String(data.get("cmdline") || "")) body.cmdline = String(data.get("cmdline"));
  perform(instance, "load", "POST", `/v1/instances/${instance.id}/load`, body);
}

// ---- resize dialog ------------------------------------------------------------------------------

// The instance's ETag (mkd/services/records.py etag_of): its uid and version.
function instanceEtag(instance) {
  return `"${instance.uid}-${instance.version}"`;
}

function openResizeDialog(instance) {
  view.resizeTarget = { id: instance.id, etag: instanceEtag(instance) };
  $("resize-target").textContent = instance.name;
  $("resize-cpus").value = instance.resources.cpus.length ? formatCpus(instance.resources.cpus) : "";
  $("resize-memory").value = mibOf(instance.resources.memory_bytes);
  $("resize-dialog").showModal();
}

function onResizeSubmit(event) {
  event.preventDefault();
  const dialog = $("resize-dialog");
  const target = view.resizeTarget;
  const instance = target && view.instances.get(target.id);
  const data = new FormData(event.target);
  dialog.close();
  if (!instance) return;
  let resources;
  try {
    resources = {
      cpus: parseCpus(String(data.get("cpus") || "")),
      memory_bytes: parseMiB(String(data.get("memory_mib") ?? ""), "memory"),
    };
  } catch (error) {
    showProblem(error, `resize ${instance.name}`);
    return;
  }
  // PATCH replaces the whole resource set: keep what the dialog does not edit.
  const current = instance.resources;
  if (current.llc_way_mask !== null && current.llc_way_mask !== undefined) resources.llc_way_mask = current.llc_way_mask;
  if (current.devices && current.devices.length) resources.devices = [...current.devices];
  // If-Match: the instance as the dialog showed it; a change since then is a 412, not a surprise.
  perform(instance, "resize", "PATCH", `/v1/instances/${instance.id}`, { resources }, { "If-Match": target.etag });
}

// ---- live updates -------------------------------------------------------------------------------

function setConnection(state, text) {
  const indicator = $("connection");
  indicator.dataset.state = state;
  $("connection-text").textContent = text;
}

async function reloadAll() {
  try {
    await Promise.all([loadInstances(), loadPool()]);
  } catch (error) {
    showProblem(error, "Reading instances");
  }
}

function onEvent(type, message) {
  if (message.lastEventId) view.lastEventId = message.lastEventId;
  let data = {};
  try {
    data = JSON.parse(message.data);
  } catch {
    return;
  }
  switch (type) {
    case "created":
      refreshInstance(data.id);
      schedulePoolRefresh();
      break;
    case "state":
      refreshInstance(data.id);
      break;
    case "deleted":
      forgetInstance(data.id, data.uid);
      schedulePoolRefresh();
      break;
    case "reconciled":
      if (data.id) refreshInstance(data.id);
      schedulePoolRefresh();
      break;
    case "reset": // events were lost beyond retention: start again from a full read
      reloadAll();
      break;
    default: // "refused": a refusal changes nothing
      break;
  }
}

let source = null;
function connectEvents() {
  // A fresh EventSource resumes after the last event seen; the browser's own retries send
  // Last-Event-ID by themselves.
  const query = view.lastEventId ? `?last_event_id=${encodeURIComponent(view.lastEventId)}` : "";
  source = new EventSource(`/v1/events${query}`);
  setConnection("connecting", "connecting…");
  source.addEventListener("open", () => {
    setConnection("live", "live");
    // With no event id to resume from, changes made before the stream opened were not sent:
    // read the whole state now that nothing further can be missed.
    if (!view.lastEventId) reloadAll();
  });
  for (const type of EVENT_TYPES) source.addEventListener(type, (message) => onEvent(type, message));
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (the daemon answered with an error status): try again ourselves.
      setConnection("offline", "offline — retrying");
      source.close();
      setTimeout(connectEvents, RECONNECT_DELAY_MS);
    } else {
      // The browser retries by itself; until then, changes are not arriving.
      setConnection("offline", "offline — reconnecting…");
    }
  });
}

// ---- start --------------------------------------------------------------------------------------

// Ask for a token and trade it for the HttpOnly session cookie (POST /v1/session): the browser's
// EventSource cannot send an Authorization header, a cookie it sends by itself.
function signIn() {
  const form = $("login-form");
  form.hidden = false;
  return new Promise((resolve) => {
    const onSubmit = async (event) => {
      event.preventDefault();
      try {
        await request("POST", "/v1/session", { token: form.elements.token.value });
        form.hidden = true;
        form.removeEventListener("submit", onSubmit);
        clearProblem();
        resolve();
      } catch (error) {
        showProblem(error, "Signing in");
      }
    };
    form.addEventListener("submit", onSubmit);
  });
}

async function start() {
  $("message-dismiss").addEventListener("click", clearProblem);
  $("instances-body").addEventListener("click", onInstanceAction);
  $("images-body").addEventListener("click", onImageDelete);
  $("create-form").addEventListener("submit", onCreate);
  $("upload-form").addEventListener("submit", onUpload);
  $("load-form").addEventListener("submit", onLoadSubmit);
  $("load-cancel").addEventListener("click", () => $("load-dialog").close());
  $("resize-form").addEventListener("submit", onResizeSubmit);
  $("resize-cancel").addEventListener("click", () => $("resize-dialog").close());
  $("plan-form").addEventListener("submit", onCreateFromPlan);
  $("pool-form").addEventListener("input", () => {
    view.poolFormDirty = true;
  });
  $("pool-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submitPool(false);
  });
  $("pool-preview").addEventListener("click", () => submitPool(true));
  $("pool-reset").addEventListener("click", () => {
    hidePoolDiff();
    loadPool({ refill: true }).catch((error) => showProblem(error, "Reading the pool"));
  });
  updateEmptyNotice();
  renderImages();
  // Host first: its capabilities decide which buttons the instance rows enable.
  for (;;) {
    try {
      await loadHost();
      break;
    } catch (error) {
      showProblem(error, "Reading the host"); // 503 while the daemon reconciles: wait and retry
      if (error.problem && error.problem.status === 401) {
        await signIn(); // beyond loopback: trade a token for the session cookie, then retry
        continue;
      }
      await new Promise((resolve) => setTimeout(resolve, RECONNECT_DELAY_MS));
    }
  }
  clearProblem();
  connectEvents();
  await Promise.all([
    loadImages().catch((error) => showProblem(error, "Listing images")),
    reloadAll(),
  ]);
  document.body.dataset.ready = "true";
}

start();
