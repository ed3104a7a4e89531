// The event log: the latest events of GET /v1/events (the stream the page already follows),
// newest first, filtered by instance name or id.

import { $, element } from "./dom.js";
import { changed, follow } from "./store.js";

export const LOG_LIMIT = 200;
const entries = []; // newest first
let filter = "";

function describe(type, data) {
  switch (type) {
    case "created":
      return `created (${data.to})`;
    case "state":
      return `${data.from} → ${data.to}${data.cause && data.cause !== "api" ? ` (${data.cause})` : ""}`;
    case "deleted":
      return `deleted (was ${data.from})`;
    case "refused":
      return `${data.operation} refused: ${data.errno}`;
    case "reconciled":
      return `reconciled: ${Object.entries(data).filter(([key]) => !["id", "name", "uid"].includes(key))
        .map(([key, value]) => `${key} ${typeof value === "object" ? JSON.stringify(value) : value}`).join(", ")}`;
    case "spec":
      return data.decision ? `after a stop: ${data.decision} (generation ${data.generation})`
        : `new spec, generation ${data.generation}`;
    case "restarted":
      return `restart ${data.attempt}: ${data.reason}`;
    case "reset":
      return "events were lost: the page read everything again";
    default:
      return type;
  }
}

export function logEvent(type, data, eventId) {
  entries.unshift({ type, data, eventId, at: new Date() });
  if (entries.length > LOG_LIMIT) entries.length = LOG_LIMIT;
  changed("events");
}

function matches(entry) {
  if (!filter) return true;
  const { id, name } = entry.data;
  return String(id ?? "") === filter || (name || "").toLowerCase().includes(filter.toLowerCase());
}

// Each entry's list item is made once: a burst adds its own and moves the rest.
function itemOf(entry) {
  if (!entry.node) {
    const who = entry.data.name ? `${entry.data.name} (${entry.data.id})` : entry.data.id ? `instance ${entry.data.id}` : "daemon";
    entry.node = element("li", { "data-testid": "event", "data-type": entry.type, "data-event-id": entry.eventId || null },
      element("time", { datetime: entry.at.toISOString() }, entry.at.toLocaleTimeString([], { hour12: false })),
      element("span", { class: `event-type type-${entry.type}` }, entry.type),
      element("span", { class: "event-who" }, who),
      element("span", { class: "event-what" }, describe(entry.type, entry.data)));
  }
  return entry.node;
}

function drawEventLog() {
  const shown = entries.filter(matches);
  $("event-log").replaceChildren(...shown.map(itemOf));
  $("event-log-empty").hidden = shown.length > 0;
  $("event-count").textContent = filter
    ? `${shown.length} of the latest ${entries.length} events match`
    : `latest ${entries.length} events (at most ${LOG_LIMIT})`;
}

export function setUpEventLog() {
  $("event-filter").addEventListener("input", (event) => {
    filter = event.target.value.trim();
    drawEventLog();
  });
  follow(["events"], drawEventLog);
  drawEventLog();
}
