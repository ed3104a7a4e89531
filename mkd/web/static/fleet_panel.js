// The fleet panel (DESIGN "Fleet": the dashboard shows the fleet when configured): the fleet's
// nodes with their capacity and health, its instances with their placement and phase, and why an
// instance is Pending or NodeLost. It stays hidden on a daemon without [fleet] (GET
// /v1/fleet/nodes answers 404); otherwise it reads /v1/fleet/nodes and /v1/fleet/instances after
// the first render and again every REFRESH_MS while the page is visible (the daemon's event
// stream carries no fleet events: the fleet lives in etcd).
// Imported by dashboard.js for its effect; it shares only the API and DOM helpers with the rest.

import { send } from "./api.js";
import { $, element } from "./dom.js";
import { formatBytes } from "./format.js";

const REFRESH_MS = 5000;
const NOT_CONFIGURED = 404;
const UNAVAILABLE = 503;

const panel = () => $("fleet-panel");

function nodeState(node) {
  const parts = [node.live === false ? "lost (no lease)" : "live"];
  if (node.cordoned) parts.push("cordoned");
  return parts.join(", ");
}

// {"0": bytes, "1": bytes} -> "NUMA 0: 1 GiB, NUMA 1: 512 MiB"
function memoryFree(capacity) {
  const perNuma = capacity && capacity.memory_free;
  if (!perNuma || Object.keys(perNuma).length === 0) return "—";
  return Object.keys(perNuma).sort((a, b) => Number(a) - Number(b))
    .map((numa) => `NUMA ${numa}: ${formatBytes(perNuma[numa])}`).join(", ");
}

function labelsText(labels) {
  const entries = Object.entries(labels || {});
  return entries.length ? entries.map(([key, value]) => `${key}=${value}`).join(", ") : "—";
}

function renderNodes(nodes) {
  $("fleet-nodes-body").replaceChildren(...nodes.map((node) => element("tr", {
    "data-testid": "fleet-node", "data-name": node.name, "data-live": String(node.live !== false),
    "data-cordoned": String(Boolean(node.cordoned)),
  },
  element("th", { scope: "row", "data-testid": "fleet-node-name" }, node.name),
  element("td", { "data-testid": "fleet-node-url" }, node.url ? element("code", {}, node.url) : "—"),
  element("td", { "data-testid": "fleet-node-state" }, nodeState(node)),
  element("td", { "data-testid": "fleet-node-cpus-free" },
    node.capacity && node.capacity.cpus_free !== undefined ? String(node.capacity.cpus_free) : "—"),
  element("td", { "data-testid": "fleet-node-memory-free" }, memoryFree(node.capacity)),
  element("td", { "data-testid": "fleet-node-labels" }, labelsText(node.labels)))));
  $("fleet-nodes-empty").hidden = nodes.length > 0;
}

// Why an instance is where it is: the scheduler's reason while Pending, the lost node while
// NodeLost, the owner's report when it failed.
function reasonOf(status) {
  if (status.reason) return status.reason;
  if (status.message) return status.message;
  return "—";
}

function renderInstances(instances) {
  $("fleet-instances-body").replaceChildren(...instances.map((doc) => {
    const status = doc.status || {};
    const spec = doc.spec || {};
    const deleting = Boolean(doc.metadata.deletionTimestamp);
    return element("tr", { "data-testid": "fleet-instance", "data-name": doc.metadata.name, "data-phase": status.phase },
      element("th", { scope: "row", "data-testid": "fleet-instance-name" }, doc.metadata.name),
      element("td", { "data-testid": "fleet-instance-node" }, status.node || "—"),
      element("td", { "data-testid": "fleet-instance-phase" }, deleting ? `${status.phase} (deleting)` : status.phase),
      element("td", { "data-testid": "fleet-instance-reason" }, reasonOf(status)),
      element("td", { "data-testid": "fleet-instance-reschedule" }, spec.reschedule || "Never"));
  }));
  $("fleet-instances-empty").hidden = instances.length > 0;
}

function showStatus(text, state) {
  const status = $("fleet-status");
  status.textContent = text;
  status.dataset.state = state;
}

// One read of both lists. Resolves false when the daemon has no fleet (the panel stays hidden).
async function refresh() {
  let nodes;
  try {
    nodes = (await send("GET", "/v1/fleet/nodes")).body.items;
  } catch (error) {
    const status = error.problem && error.problem.status;
    if (status === NOT_CONFIGURED) {
      panel().hidden = true;
      panel().dataset.configured = "false"; // settled: the page has no fleet to show
      return false;
    }
    // 503: configured, etcd unreachable; 401 (not signed in yet) or a restarting daemon: unknown
    // yet. Say so where the panel is shown, and try again.
    if (status === UNAVAILABLE) {
      panel().hidden = false;
      panel().dataset.configured = "true";
    }
    showStatus(`Fleet not read: ${error.message}`, "error");
    return true;
  }
  panel().hidden = false;
  panel().dataset.configured = "true";
  renderNodes(nodes);
  try {
    renderInstances((await send("GET", "/v1/fleet/instances")).body.items);
  } catch (error) {
    showStatus(`Fleet instances not read: ${error.message}`, "error");
    return true;
  }
  const live = nodes.filter((node) => node.live !== false).length;
  showStatus(`${live} of ${nodes.length} nodes live; read at ${new Date().toLocaleTimeString()}`, "ok");
  return true;
}

// The first read waits for the page's first render (dashboard.js sets data-first-render), so the
// fleet's etcd reads never compete with the host, pool and instance reads the first screen needs.
function firstRender() {
  return new Promise((resolve) => {
    if (document.body.dataset.firstRender) return resolve();
    const observer = new MutationObserver(() => {
      if (!document.body.dataset.firstRender) return;
      observer.disconnect();
      resolve();
    });
    observer.observe(document.body, { attributes: true, attributeFilter: ["data-first-render"] });
  });
}

async function run() {
  await firstRender();
  if (!(await refresh())) return; // no [fleet]: nothing to show, nothing to poll
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, REFRESH_MS));
    if (document.hidden) continue; // a background tab asks etcd for nothing
    if (!(await refresh())) return; // the daemon came back without [fleet]
  }
}

run();
