// The console of the selected instance, followed live: GET /v1/instances/{id}/console is SSE,
// one `line` event per line whose `id` is the byte offset just past it in the instance's console
// (global across boots; DESIGN "Desired state", Console). The browser's own reconnects send
// Last-Event-ID and resume exactly there. When the browser gives up (the daemon answered with an
// error status, say while it restarts) the panel opens a new stream itself from the last offset
// shown; a line at or before it is never shown twice.

import { $ } from "./dom.js";
import { follow, store } from "./store.js";

const MAX_LINES = 2000; // the oldest go from the page (the daemon keeps the history)
const RETRY_DELAY_MS = 2000;

let source = null;
let following = null; // {id, uid} of the instance followed
let lastOffset = -1; // the offset just past the last line shown
let pending = []; // lines received, not yet on the page
let scheduled = false;
let retryTimer = null;

function setStatus(state, text) {
  const status = $("console-status");
  status.dataset.state = state;
  status.textContent = text;
}

function flushLines() {
  scheduled = false;
  const panel = $("console");
  const atBottom = panel.scrollTop + panel.clientHeight >= panel.scrollHeight - 4;
  panel.append(...pending.map((line) => document.createTextNode(`${line}\n`)));
  pending = [];
  while (panel.childNodes.length > MAX_LINES) panel.firstChild.remove();
  if (atBottom) panel.scrollTop = panel.scrollHeight; // stay at the end unless the reader scrolled up
  panel.dataset.offset = String(lastOffset);
}

function onLine(message) {
  const offset = Number(message.lastEventId);
  if (Number.isFinite(offset)) {
    if (offset <= lastOffset) return; // already shown (a replayed history)
    lastOffset = offset;
  }
  pending.push(message.data);
  if (!scheduled) {
    scheduled = true;
    requestAnimationFrame(flushLines);
  }
}

function close() {
  clearTimeout(retryTimer);
  retryTimer = null;
  if (source) source.close();
  source = null;
}

function open(target) {
  close();
  // From everything kept (0: the previous boot too, what it printed before it died), or on from
  // the last line shown; the browser's own reconnects send Last-Event-ID, which wins.
  source = new EventSource(`/v1/instances/${target.id}/console?last_event_id=${Math.max(lastOffset, 0)}`);
  const opened = source;
  setStatus("connecting", `connecting to ${target.name}'s console…`);
  opened.addEventListener("open", () => setStatus("live", `following ${target.name}'s console`));
  opened.addEventListener("line", onLine);
  opened.addEventListener("error", () => {
    if (opened !== source) return;
    if (opened.readyState === EventSource.CLOSED) {
      setStatus("offline", "console unavailable — retrying");
      opened.close();
      retryTimer = setTimeout(() => {
        if (following === target) open(target);
      }, RETRY_DELAY_MS);
    } else {
      setStatus("offline", "console cut — reconnecting…"); // the browser resumes with Last-Event-ID
    }
  });
}

// Follow the selected instance's console; a new selection starts from its history.
function drawConsole() {
  const instance = store.instances.get(store.selected);
  if (following && instance && instance.id === following.id && instance.uid === following.uid) return;
  if (!following && !instance) return;
  close();
  following = null;
  lastOffset = -1;
  pending = [];
  $("console").replaceChildren();
  delete $("console").dataset.offset;
  if (!instance) {
    setStatus("idle", "no instance selected");
    return;
  }
  following = { id: instance.id, uid: instance.uid, name: instance.name };
  open(following);
}

export function setUpConsole() {
  follow(["instances", "selection"], drawConsole);
}
