// The selected instance in full: its state and, for a declared instance (DESIGN "Desired
// state"), the spec it is kept to, its conditions, generation, restarts and last failure (the
// reason and what the console printed before it). Redrawn only when that instance changes.

import { $, element } from "./dom.js";
import { formatBytes, formatCpus } from "./format.js";
import { follow, store } from "./store.js";

function describeResources(resources) {
  const cpus = resources.cpus && resources.cpus.length
    ? `CPUs ${formatCpus(resources.cpus)}`
    : `${resources.cpu_count ?? 0} CPU${resources.cpu_count === 1 ? "" : "s"}`;
  return `${cpus}, ${formatBytes(resources.memory_bytes)}`;
}

// A sha256 shortened for the eye; the whole of it on hover.
function image(sha) {
  return sha ? element("code", { title: sha }, `${sha.slice(0, 12)}…`) : "none";
}

function specRows(instance) {
  const spec = instance.spec;
  const labels = Object.entries(instance.labels || {}).map(([key, value]) => `${key}=${value}`).join(", ");
  const rows = [
    ["state", "Desired state", spec.state],
    ["restart-policy", "Restart policy", `${spec.restartPolicy}${spec.maxRestarts !== undefined ? ` (at most ${spec.maxRestarts} in 10 min)` : ""}`],
    ["kernel", "Kernel", image(spec.kernel)],
    ["initrd", "Initrd", image(spec.initrd)],
    ["cmdline", "Command line", spec.cmdline || "(none)"],
    ["resources", "Resources", describeResources(spec.resources)],
    ["generation", "Generation", `${instance.generation}, observed ${instance.observed_generation ?? "none yet"}`],
    ["restarts", "Restarts", String(instance.restarts ?? 0)],
    ["labels", "Labels", labels || "none"],
  ];
  if (spec.paused) rows.push(["paused", "Paused", "yes: the reconciler leaves it alone"]);
  return rows.flatMap(([key, term, value]) => [element("dt", {}, term), element("dd", { "data-testid": `spec-${key}` }, value)]);
}

function conditionRow(condition) {
  return element("tr", { "data-testid": "condition", "data-type": condition.type, "data-status": condition.status },
    element("th", { scope: "row" }, condition.type),
    element("td", { class: `condition-${condition.status}` }, condition.status),
    element("td", { "data-testid": "condition-reason" }, condition.reason || ""),
    element("td", { "data-testid": "condition-message" }, condition.message || ""),
    element("td", {}, condition.last_transition
      ? element("time", { datetime: condition.last_transition }, new Date(condition.last_transition).toLocaleString())
      : ""));
}

function drawFailure(failure) {
  const console = $("details-last-failure-console");
  if (!failure) {
    $("details-last-failure").textContent = "none";
    console.hidden = true;
    console.textContent = "";
    return;
  }
  const when = failure.at ? ` at ${new Date(failure.at).toLocaleString()}` : "";
  $("details-last-failure").textContent = `${failure.reason}${failure.to ? ` (ended ${failure.to})` : ""}${when}`;
  console.hidden = !failure.console;
  console.textContent = failure.console || "";
}

let shown = null; // the body last drawn: an unchanged instance is not redrawn

function drawDetails() {
  const instance = store.instances.get(store.selected) || null;
  if (instance === shown) return;
  shown = instance;
  $("details-none").hidden = instance !== null;
  $("details-body").hidden = instance === null;
  if (!instance) return;
  $("details-title").textContent = `${instance.name} (instance ${instance.id})`;
  $("details-state").textContent = instance.state;
  $("details-kernel-state").textContent = instance.kernel_state;
  $("details-failure").textContent = instance.failure || "none";
  const declared = Boolean(instance.spec);
  $("details-undeclared").hidden = declared;
  $("details-declared").hidden = !declared;
  if (!declared) return;
  $("details-spec").replaceChildren(...specRows(instance));
  $("details-conditions").querySelector("tbody").replaceChildren(...(instance.conditions || []).map(conditionRow));
  drawFailure(instance.last_failure);
}

export function setUpDetails() {
  follow(["instances", "selection"], drawDetails);
  drawDetails();
}
