// The instance table (filter by name and state, sort, pages), its lifecycle actions, the create
// forms and the load and resize dialogs. Which actions a row enables comes from the instance's
// `allowed_actions` (the daemon's transition table and the host's capabilities); ETags come from
// the daemon's replies.

import { ApiError, request, send } from "./api.js";
import { $, element, ownerClass } from "./dom.js";
import { formatBytes, formatCpus, mibOf, parseCpus, parseMiB } from "./format.js";
import { readAll, readFirstPage } from "./instance_pages.js";
import { showProblem } from "./messages.js";
import { schedulePoolRefresh } from "./pool.js";
import { changed, follow, instanceChanged, select, store } from "./store.js";

const PAGE_SIZE = 50;
const FDT_MAGIC = [0xd0, 0x0d, 0xfe, 0xed];
// Only to say why a button is greyed out; whether it is comes from allowed_actions.
const CAPABILITY_NOTES = {
  stop: ["halt", "has no halt command"],
  stop_force: ["halt", "has no halt command"],
  update: ["hot_update", "cannot update an instance's resources (no hot update)"],
};
const PROGRESS = {
  load: "loading…", unload: "unloading…", unload_force: "unloading…", start: "starting…", stop: "stopping…",
  stop_force: "stopping…", delete: "deleting…", update: "resizing…",
};
const SORT_KEYS = {
  id: (i) => i.id,
  name: (i) => i.name,
  state: (i) => i.state,
  cpus: (i) => i.resources.cpus.length,
  memory: (i) => i.resources.memory_bytes,
};

const table = { name: "", state: "", labels: [], sort: "id", descending: false, page: 0 };
// reading: full reads in progress (the pages after the first are still coming); whole: a full read
// has ended, so the store holds the whole list rather than the first screen's page.
const listing = { reading: 0, whole: false };
let loadTarget = null; // the instance the load dialog is for
let resizeTarget = null; // {id, etag} of the instance the resize dialog was filled from

// ---- the store ----------------------------------------------------------------------------------

// Record an instance body from any source, unless it is older than what is shown: replies to
// concurrent reads can arrive out of order, and `version` increases with every change.
export function applyInstance(instance) {
  if (store.goneUids.has(instance.uid)) return;
  const shown = store.instances.get(instance.id);
  if (shown && shown.uid === instance.uid && shown.version > instance.version) return;
  store.instances.set(instance.id, instance);
  instanceChanged(instance.id);
}

export function forgetInstance(id, uid) {
  if (uid) store.goneUids.add(uid);
  const shown = store.instances.get(id);
  if (shown && (!uid || shown.uid === uid)) {
    store.instances.delete(id);
    store.busy.delete(id);
    if (store.selected === id) store.selected = null;
    instanceChanged(id);
    changed("selection");
  }
}

export async function refreshInstance(id) {
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

// Read every instance again, a page at a time (instance_pages.js). What was shown before and is
// in no page any more is gone.
export async function loadInstances() {
  const before = new Set(store.instances.keys());
  const seen = new Set();
  listing.reading += 1;
  try {
    await readAll((items, { first, last }) => {
      for (const item of items) {
        seen.add(item.id);
        applyInstance(item);
      }
      if (last) for (const id of before) if (!seen.has(id)) forgetInstance(id, null);
      if (first) changed("all-instances");
    });
  } finally {
    listing.reading -= 1;
    listing.whole = true;
    changed("instances");
  }
}

// The first page of instances alone, for the first screen; the full read (loadInstances) follows.
export async function loadFirstPage() {
  for (const item of await readFirstPage()) applyInstance(item);
  changed("all-instances");
}

// ---- the table ----------------------------------------------------------------------------------

function refusal(action, instance) {
  if (store.busy.has(instance.id)) return "another action on this instance is in progress";
  if ((instance.allowed_actions || []).includes(action)) return null;
  const note = CAPABILITY_NOTES[action];
  if (note && store.host && !store.host.capabilities[note[0]]) return `the ${store.host.kernel_profile} kernel ${note[1]}`;
  return `not possible in state ${instance.state}`;
}

// testid: the button's data-testid suffix; action: the daemon's name for it.
function actionButton(instance, testid, action, label) {
  const reason = refusal(action, instance);
  return element("button", {
    type: "button",
    "data-testid": `action-${testid}`,
    "data-action": action,
    "aria-label": `${label.replace("…", "")} ${instance.name}`,
    disabled: reason !== null,
    title: reason,
  }, label);
}

function renderKimage(kimage) {
  if (!kimage) return "—";
  const count = kimage.segments.length;
  return `${kimage.loader}, ${count} segment${count === 1 ? "" : "s"}`;
}

// A declared instance in a word: converged or not, its restarts, a Running condition that is False.
function renderDeclared(instance) {
  if (!instance.spec) return "—";
  const parts = [instance.observed_generation === instance.generation ? `gen ${instance.generation}` : `gen ${instance.observed_generation ?? 0}/${instance.generation}`];
  if (instance.restarts) parts.push(`${instance.restarts} restart${instance.restarts === 1 ? "" : "s"}`);
  const running = (instance.conditions || []).find((c) => c.type === "Running");
  if (running && running.status === "False") parts.push(running.reason);
  return parts.join(", ");
}

function renderRow(instance) {
  const busy = store.busy.get(instance.id);
  const selected = store.selected === instance.id;
  const stateCell = element("td", {},
    element("span", { class: `state state-${instance.state}`, "data-testid": "instance-state", title: instance.failure }, instance.state));
  if (busy) stateCell.append(" ", element("span", { class: "busy", "data-testid": "instance-busy" }, busy));
  const kimageCell = element("td", { "data-testid": "instance-kimage", title: instance.kimage ? `cmdline: ${instance.kimage.cmdline}` : null },
    renderKimage(instance.kimage));
  const forced = instance.state === "ACTIVE";
  const actions = element("td", {}, element("div", { class: "actions" },
    actionButton(instance, "load", "load", "Load…"),
    actionButton(instance, "resize", "update", "Resize…"),
    actionButton(instance, "unload", forced ? "unload_force" : "unload", forced ? "Force unload" : "Unload"),
    actionButton(instance, "start", "start", "Start"),
    actionButton(instance, "stop", "stop", "Stop"),
    actionButton(instance, "stop-force", "stop_force", "Force stop"),
    actionButton(instance, "delete", "delete", "Delete")));
  const selectButton = element("button", {
    type: "button", class: "select", "data-testid": "instance-select", "aria-pressed": String(selected),
    title: "Highlight in the CPU and memory maps",
  }, element("span", { class: `swatch ${ownerClass(instance.id)}`, "aria-hidden": "true" }), instance.name);
  return element("tr", {
    "data-testid": "instance-row",
    "data-instance-id": String(instance.id),
    "data-name": instance.name,
    "data-state": instance.state,
    "aria-busy": busy ? "true" : null,
    class: selected ? "selected" : null,
  },
  element("td", { "data-testid": "instance-id" }, String(instance.id)),
  element("th", { scope: "row", "data-testid": "instance-name" }, selectButton),
  stateCell,
  element("td", { "data-testid": "instance-kernel-state" }, instance.kernel_state),
  element("td", { "data-testid": "instance-cpus" }, formatCpus(instance.resources.cpus)),
  element("td", { "data-testid": "instance-memory" }, formatBytes(instance.resources.memory_bytes)),
  kimageCell,
  element("td", { "data-testid": "instance-declared", title: instance.last_failure ? `last failure: ${instance.last_failure.reason}` : null },
    renderDeclared(instance)),
  actions);
}

// "team=web, tier=db" -> [["team", "web"], ["tier", "db"]]: every pair must match, as
// GET /v1/instances?label=k=v selects; a bare key matches any value.
function parseLabels(text) {
  return text.split(/[,\s]+/).filter(Boolean).map((pair) => {
    const at = pair.indexOf("=");
    return at < 0 ? [pair, null] : [pair.slice(0, at), pair.slice(at + 1)];
  });
}

function labelled(instance) {
  const labels = instance.labels || {};
  return table.labels.every(([key, value]) => key in labels && (value === null || labels[key] === value));
}

function shownInstances() {
  const name = table.name.toLowerCase();
  const rows = [...store.instances.values()].filter((i) =>
    (!name || i.name.toLowerCase().includes(name)) && (!table.state || i.state === table.state)
    && (!table.labels.length || labelled(i)));
  const key = SORT_KEYS[table.sort];
  const direction = table.descending ? -1 : 1;
  rows.sort((a, b) => {
    const x = key(a);
    const y = key(b);
    return (x < y ? -1 : x > y ? 1 : a.id - b.id) * direction;
  });
  return rows;
}

// The rows drawn last, by id, with what they were drawn from: a redraw makes only the rows whose
// instance, progress or selection changed (a burst elsewhere in the list leaves the page alone).
let drawnRows = new Map(); // id -> {instance, busy, selected, host, node}

function rowOf(instance) {
  const busy = store.busy.get(instance.id);
  const selected = store.selected === instance.id;
  const kept = drawnRows.get(instance.id);
  if (kept && kept.instance === instance && kept.busy === busy && kept.selected === selected && kept.host === store.host) {
    return kept;
  }
  return { instance, busy, selected, host: store.host, node: renderRow(instance) };
}

function drawTable() {
  const rows = shownInstances();
  const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
  table.page = Math.min(table.page, pages - 1);
  const first = table.page * PAGE_SIZE;
  const page = rows.slice(first, first + PAGE_SIZE);
  const made = page.map(rowOf);
  const body = $("instances-body");
  const same = made.length === body.children.length && made.every((row, index) => body.children[index] === row.node);
  if (!same) body.replaceChildren(...made.map((row) => row.node));
  drawnRows = new Map(made.map((row) => [row.instance.id, row]));
  const total = store.instances.size;
  const partial = listing.reading > 0 || !listing.whole;
  $("instances-empty").hidden = total > 0 || partial;
  $("instances-count").textContent = partial
    ? `reading the instance list… ${total} so far${rows.length ? `, showing ${first + 1}–${first + page.length}` : ""}`
    : rows.length === total
    ? `${total} instance${total === 1 ? "" : "s"}${rows.length ? `, showing ${first + 1}–${first + page.length}` : ""}`
    : `${rows.length} of ${total} match${rows.length ? `, showing ${first + 1}–${first + page.length}` : ""}`;
  $("instances-page").textContent = `Page ${table.page + 1} of ${pages}`;
  $("instances-prev").disabled = table.page === 0;
  $("instances-next").disabled = table.page >= pages - 1;
  for (const header of document.querySelectorAll("[data-testid=instances] th[data-sort]")) {
    const sorted = header.dataset.sort === table.sort;
    if (sorted) header.setAttribute("aria-sort", table.descending ? "descending" : "ascending");
    else header.removeAttribute("aria-sort");
  }
}

function onSort(event) {
  const header = event.target.closest("th[data-sort]");
  if (!header || !event.target.closest("button")) return;
  const key = header.dataset.sort;
  table.descending = table.sort === key ? !table.descending : false;
  table.sort = key;
  table.page = 0;
  drawTable();
}

// ---- actions ------------------------------------------------------------------------------------

function setBusy(id, text) {
  if (text) store.busy.set(id, text);
  else store.busy.delete(id);
  changed("instances");
}

// Run one action against the daemon, showing it in progress on the row meanwhile.
async function perform(instance, action, method, path, body, headers) {
  setBusy(instance.id, PROGRESS[action]);
  try {
    const result = await request(method, path, body, headers);
    setBusy(instance.id, null);
    if (action === "delete") {
      forgetInstance(instance.id, instance.uid);
      schedulePoolRefresh();
    } else {
      applyInstance(result);
      if (action === "update") schedulePoolRefresh(); // what is free changed
    }
  } catch (error) {
    setBusy(instance.id, null);
    showProblem(error, `${method === "PATCH" ? "resize" : action.replace("_force", "").replace("_", " ")} ${instance.name}`);
    await refreshInstance(instance.id); // a refusal may mean the row was stale
  }
}

function onRowClick(event) {
  const row = event.target.closest("tr[data-instance-id]");
  if (!row) return;
  const id = Number(row.dataset.instanceId);
  const instance = store.instances.get(id);
  if (!instance) return;
  if (event.target.closest("button[data-testid=instance-select]")) {
    select(id);
    return;
  }
  const button = event.target.closest("button[data-action]");
  if (!button || button.disabled) return;
  const base = `/v1/instances/${id}`;
  switch (button.dataset.action) {
    case "load":
      openLoadDialog(instance);
      break;
    case "update":
      openResizeDialog(instance);
      break;
    case "unload":
      perform(instance, "unload", "POST", `${base}/unload`, { force: false });
      break;
    case "unload_force":
      if (!window.confirm(`Force unload the running instance ${instance.name}?`)) return;
      perform(instance, "unload", "POST", `${base}/unload`, { force: true });
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

// ---- create -------------------------------------------------------------------------------------

async function onCreate(event) {
  event.preventDefault();
  const form = event.target;
  const data = new FormData(form);
  const submit = $("create-submit");
  try {
    const resources = { memory_bytes: parseMiB(String(data.get("memory_mib") ?? ""), "memory") };
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

// ---- load dialog --------------------------------------------------------------------------------

function imageOption(image) {
  return element("option", { value: image.sha256 }, `${image.sha256.slice(0, 12)}… (${image.format}, ${formatBytes(image.size)})`);
}

let loadImagesForDialog = async () => {};

async function openLoadDialog(instance) {
  loadTarget = instance.id;
  $("load-target").textContent = instance.name;
  try {
    await loadImagesForDialog(); // another client may have uploaded since the page loaded
  } catch (error) {
    showProblem(error, "Listing images");
  }
  const kernels = store.images.filter((i) => i.format !== "initrd");
  const initrds = store.images.filter((i) => i.format === "initrd" || i.format === "unknown");
  $("load-kernel").replaceChildren(...(kernels.length ? kernels : store.images).map(imageOption));
  $("load-initrd").replaceChildren(element("option", { value: "" }, "none"), ...initrds.map(imageOption));
  $("load-submit").disabled = store.images.length === 0;
  $("load-submit").title = store.images.length === 0 ? "upload a kernel image first" : "";
  $("load-dialog").showModal();
}

function onLoadSubmit(event) {
  event.preventDefault();
  const instance = store.instances.get(loadTarget);
  const data = new FormData(event.target);
  $("load-dialog").close();
  if (!instance) return;
  const body = { kernel: String(data.get("kernel")) };
  if (data.get("initrd")) body.initrd = String(data.get("initrd"));
  if (String(data.get("cmdline") || "")) body.cmdline = String(data.get("cmdline"));
  perform(instance, "load", "POST", `/v1/instances/${instance.id}/load`, body);
}

// ---- resize dialog ------------------------------------------------------------------------------

// Fill the dialog from a fresh read, whose ETag makes the PATCH conditional on what was shown.
async function openResizeDialog(instance) {
  let current;
  try {
    current = await send("GET", `/v1/instances/${instance.id}`);
  } catch (error) {
    showProblem(error, `Reading ${instance.name}`);
    return;
  }
  applyInstance(current.body);
  resizeTarget = { id: instance.id, etag: current.etag };
  $("resize-target").textContent = instance.name;
  $("resize-cpus").value = current.body.resources.cpus.length ? formatCpus(current.body.resources.cpus) : "";
  $("resize-memory").value = mibOf(current.body.resources.memory_bytes);
  $("resize-dialog").showModal();
}

function onResizeSubmit(event) {
  event.preventDefault();
  const target = resizeTarget;
  const instance = target && store.instances.get(target.id);
  const data = new FormData(event.target);
  $("resize-dialog").close();
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
  const headers = target.etag ? { "If-Match": target.etag } : {};
  perform(instance, "update", "PATCH", `/v1/instances/${instance.id}`, { resources }, headers);
}

// ---- set-up -------------------------------------------------------------------------------------

export function setUpInstances({ loadImages }) {
  loadImagesForDialog = loadImages;
  $("instances-body").addEventListener("click", onRowClick);
  $("instances").querySelector("thead").addEventListener("click", onSort);
  $("instances-filter-name").addEventListener("input", (event) => {
    table.name = event.target.value.trim();
    table.page = 0;
    drawTable();
  });
  $("instances-filter-label").addEventListener("input", (event) => {
    table.labels = parseLabels(event.target.value.trim());
    table.page = 0;
    drawTable();
  });
  $("instances-filter-state").addEventListener("change", (event) => {
    table.state = event.target.value;
    table.page = 0;
    drawTable();
  });
  $("instances-prev").addEventListener("click", () => {
    table.page = Math.max(0, table.page - 1);
    drawTable();
  });
  $("instances-next").addEventListener("click", () => {
    table.page += 1;
    drawTable();
  });
  $("create-form").addEventListener("submit", onCreate);
  $("plan-form").addEventListener("submit", onCreateFromPlan);
  $("load-form").addEventListener("submit", onLoadSubmit);
  $("load-cancel").addEventListener("click", () => $("load-dialog").close());
  $("resize-form").addEventListener("submit", onResizeSubmit);
  $("resize-cancel").addEventListener("click", () => $("resize-dialog").close());
  follow(["instances", "selection", "host"], drawTable);
  drawTable();
}

// Show the page of the table that holds instance `id` (picked in a map).
export function revealInstance(id) {
  const index = shownInstances().findIndex((instance) => instance.id === id);
  if (index < 0) {
    table.name = "";
    table.state = "";
    table.labels = [];
    $("instances-filter-name").value = "";
    $("instances-filter-state").value = "";
    $("instances-filter-label").value = "";
  }
  const at = shownInstances().findIndex((instance) => instance.id === id);
  if (at >= 0) table.page = Math.floor(at / PAGE_SIZE);
  drawTable();
}
