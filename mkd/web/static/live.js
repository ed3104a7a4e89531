// Live updates from GET /v1/events: each event goes to the event log and to the store. Reads
// that follow from a burst of events are merged (one GET per instance however many events name
// it) and run a few at a time; the panels redraw once per frame. Every burst is recorded as a
// User Timing measure "mkd:event-burst" (first event received → all of it drawn).

import { $ } from "./dom.js";
import { logEvent } from "./eventlog.js";
import { forgetInstance, loadInstances, refreshInstance } from "./instances.js";
import { showProblem } from "./messages.js";
import { loadPool, schedulePoolRefresh } from "./pool.js";
import { drawn, hold, release } from "./store.js";

const EVENT_TYPES = ["created", "state", "refused", "deleted", "reconciled", "reset"];
const RECONNECT_DELAY_MS = 2000;
const PARALLEL_READS = 5; // the browser's six connections per host, less the stream's

let lastEventId = null;
const toRead = new Set();
let reading = 0;
let burst = null; // {start, events}

function settleBurst() {
  if (!burst || reading > 0 || toRead.size > 0) return;
  const current = burst;
  drawn().then(() => {
    if (burst !== current || reading > 0 || toRead.size > 0) return;
    burst = null;
    performance.measure("mkd:event-burst", { start: current.start, end: performance.now(), detail: { events: current.events } });
  });
}

function pump() {
  if (reading === 0 && toRead.size > 0) hold(); // one redraw when the reads are done
  while (reading < PARALLEL_READS && toRead.size > 0) {
    const id = toRead.values().next().value;
    toRead.delete(id);
    reading += 1;
    refreshInstance(id).finally(() => {
      reading -= 1;
      pump();
      if (reading === 0 && toRead.size === 0) release();
      settleBurst();
    });
  }
}

function read(id) {
  toRead.add(id);
  pump();
}

// Read everything again (instances and pool); the first call is the page's first full read.
export async function reloadAll() {
  try {
    await Promise.all([loadInstances(), loadPool()]);
  } catch (error) {
    showProblem(error, "Reading instances");
  }
}

function onEvent(type, message) {
  if (message.lastEventId) lastEventId = message.lastEventId;
  let data = {};
  try {
    data = JSON.parse(message.data);
  } catch {
    return;
  }
  if (!burst) burst = { start: performance.now(), events: 0 };
  burst.events += 1;
  logEvent(type, data, message.lastEventId);
  switch (type) {
    case "created":
      read(data.id);
      schedulePoolRefresh();
      break;
    case "state":
      read(data.id);
      break;
    case "deleted":
      forgetInstance(data.id, data.uid);
      schedulePoolRefresh();
      break;
    case "reconciled":
      if (data.id) read(data.id);
      schedulePoolRefresh();
      break;
    case "reset": // events were lost beyond retention: start again from a full read
      reloadAll();
      break;
    default: // "refused": a refusal changes nothing
      break;
  }
  settleBurst();
}

function setConnection(state, text) {
  $("connection").dataset.state = state;
  $("connection-text").textContent = text;
}

let source = null;
let opened = null; // resolves when the stream first opens or fails

// Start following the stream; resolves once it is open (or has failed to open), so the page's
// first full read comes after the stream is there and misses nothing.
export function connectEvents() {
  if (!opened) opened = new Promise((resolve) => connect(resolve));
  return opened;
}

function connect(firstOpen) {
  // A fresh EventSource resumes after the last event seen; the browser's own retries send
  // Last-Event-ID by themselves.
  const query = lastEventId ? `?last_event_id=${encodeURIComponent(lastEventId)}` : "";
  source = new EventSource(`/v1/events${query}`);
  setConnection("connecting", "connecting…");
  source.addEventListener("open", () => {
    setConnection("live", "live");
    // With no event id to resume from, changes made before the stream opened were not sent:
    // read the whole state now that nothing further can be missed (the first time, the page
    // itself does, once this resolves).
    if (firstOpen) firstOpen();
    else if (!lastEventId) reloadAll();
    firstOpen = null;
  });
  for (const type of EVENT_TYPES) source.addEventListener(type, (message) => onEvent(type, message));
  source.addEventListener("error", () => {
    if (firstOpen) firstOpen(); // the page reads what it can meanwhile
    firstOpen = null;
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (the daemon answered with an error status): try again ourselves.
      setConnection("offline", "offline — retrying");
      source.close();
      setTimeout(() => connect(null), RECONNECT_DELAY_MS);
    } else {
      // The browser retries by itself; until then, changes are not arriving.
      setConnection("offline", "offline — reconnecting…");
    }
  });
}
