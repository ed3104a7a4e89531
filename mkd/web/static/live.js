// Live updates from GET /v1/events: each event goes to the event log and to the store. The
// instances that the events of one animation frame name are read back together (a page of the
// list where many share one, else one GET each); the panels redraw once. Every burst is recorded as a
// User Timing measure "mkd:event-burst" (first event received → all of it drawn and painted).

import { request } from "./api.js";
import { $ } from "./dom.js";
import { logEvent } from "./eventlog.js";
import { readSome } from "./instance_pages.js";
import { applyInstance, forgetInstance, loadInstances } from "./instances.js";
import { showProblem } from "./messages.js";
import { loadPool, schedulePoolRefresh } from "./pool.js";
import { hold, painted, release } from "./store.js";

const EVENT_TYPES = ["created", "state", "refused", "deleted", "reconciled", "reset", "spec", "restarted"];
const RECONNECT_DELAY_MS = 2000;
const OPEN_TIMEOUT_MS = 5000; // a stream neither open nor refused by then is opened again

let lastEventId = null;
const toRead = new Set(); // instance ids named by events since the last read
let reading = false;
let queued = false; // a read is due at the next animation frame
let burst = null; // {start, events}

function settleBurst() {
  if (!burst || reading || queued || toRead.size > 0) return;
  const current = burst;
  painted().then(() => {
    if (burst !== current || reading || queued || toRead.size > 0) return;
    burst = null;
    performance.measure("mkd:event-burst", { start: current.start, end: performance.now(), detail: { events: current.events } });
  });
}

const readOne = (id) => request("GET", `/v1/instances/${id}`);

// The instances named by the events of one frame, read together (instance_pages.js readSome);
// the panels wait for the replies (hold) and redraw once.
async function readNamed() {
  queued = false;
  if (reading || toRead.size === 0) return;
  reading = true;
  const ids = [...toRead];
  toRead.clear();
  try {
    const [found, gone] = await readSome(ids, readOne);
    for (const body of found) applyInstance(body);
    for (const id of gone) forgetInstance(id, null);
  } catch (error) {
    showProblem(error, "Reading instances");
  }
  reading = false;
  if (toRead.size > 0) readNamed();
  else release();
  settleBurst();
}

function read(id) {
  if (id === null || id === undefined) return;
  if (!reading && !queued && toRead.size === 0) hold(); // one redraw when the reads are done
  toRead.add(id);
  if (!reading && !queued) {
    queued = true;
    requestAnimationFrame(readNamed);
  }
}

// Read everything again (instances and pool); the first call, once the stream is open, is the
// page's first full read. Resolves once every page is in the store.
export function reloadAll() {
  return Promise.all([loadInstances(), loadPool()]).catch((error) => showProblem(error, "Reading instances"));
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
    case "spec": // a new generation: the spec and its conditions
    case "restarted": // the restart count and last_failure
      read(data.id);
      break;
    case "deleted":
      forgetInstance(data.id, data.uid);
      schedulePoolRefresh();
      break;
    case "reconciled":
      read(data.id);
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
  const stream = new EventSource(`/v1/events${query}`);
  setConnection("connecting", "connecting…");
  // The daemon answers a stream's headers at once. A request with neither an answer nor an
  // error (a lost connection, a proxy that holds the headers until the first event) would leave
  // the page "connecting…" with nothing arriving: give it up and open a new one.
  const unanswered = setTimeout(() => {
    stream.close();
    setConnection("offline", "no answer — retrying");
    if (firstOpen) firstOpen(); // the page reads what it can meanwhile
    firstOpen = null;
    connect(null);
  }, OPEN_TIMEOUT_MS);
  stream.addEventListener("open", () => {
    clearTimeout(unanswered);
    setConnection("live", "live");
    // With no event id to resume from, changes made before the stream opened were not sent:
    // read the whole state now that nothing further can be missed (the first time, the page
    // itself does, once this resolves).
    if (firstOpen) firstOpen();
    else if (!lastEventId) reloadAll();
    firstOpen = null;
  });
  for (const type of EVENT_TYPES) stream.addEventListener(type, (message) => onEvent(type, message));
  stream.addEventListener("error", () => {
    clearTimeout(unanswered);
    if (firstOpen) firstOpen(); // the page reads what it can meanwhile
    firstOpen = null;
    if (stream.readyState === EventSource.CLOSED) {
      // The browser gave up (the daemon answered with an error status): try again ourselves.
      setConnection("offline", "offline — retrying");
      stream.close();
      setTimeout(() => connect(null), RECONNECT_DELAY_MS);
    } else {
      // The browser retries by itself; until then, changes are not arriving.
      setConnection("offline", "offline — reconnecting…");
    }
  });
}
