// What the page knows, shared by the panels, and one redraw per animation frame: a burst of
// events changes the store many times but each panel redraws once, for every topic it follows.
// While a burst's reads are in flight (hold/release) the redraw waits for all of them, up to
// MAX_HOLD_MS, so a hundred replies cost one redraw rather than a hundred.

export const store = {
  host: null,
  pool: null,
  poolEtag: null,
  instances: new Map(), // id -> instance body
  goneUids: new Set(), // deleted instances: a late reply about them must not bring them back
  busy: new Map(), // id -> what is in flight ("starting…")
  images: [],
  selected: null, // the instance id picked in the table or a map: both maps highlight it
};

const MAX_HOLD_MS = 250;
const panels = []; // {topics, draw}
let pending = new Set();
let touched = new Set(); // instance ids changed since the last redraw
let scheduled = false;
let holds = 0;
let heldSince = 0; // when the current hold began, or the last redraw it allowed
let holdTimer = null;
let waiters = [];

// draw(topics, ids) runs in the frame after any of `topics` changed; `ids`: the instances that
// changed (added, updated or removed) since the previous redraw.
export function follow(topics, draw) {
  panels.push({ topics: new Set(topics), draw });
}

function schedule() {
  if (!scheduled) {
    scheduled = true;
    requestAnimationFrame(flush);
  }
}

// Note what changed: "instances" (with "all-instances" after a full read), "pool", "host",
// "selection", "events".
export function changed(...topics) {
  for (const topic of topics) pending.add(topic);
  schedule();
}

export function instanceChanged(id) {
  touched.add(id);
  changed("instances");
}

export function hold() {
  if (holds === 0) heldSince = performance.now();
  holds += 1;
}

export function release() {
  holds = Math.max(0, holds - 1);
  if (holds === 0 && pending.size > 0) schedule();
}

function flush() {
  scheduled = false;
  const waited = performance.now() - heldSince;
  if (holds > 0 && waited < MAX_HOLD_MS) {
    if (!holdTimer) {
      holdTimer = setTimeout(() => {
        holdTimer = null;
        schedule();
      }, MAX_HOLD_MS - waited);
    }
    return;
  }
  heldSince = performance.now();
  const topics = pending;
  const ids = touched;
  pending = new Set();
  touched = new Set();
  for (const panel of panels) {
    if ([...topics].some((topic) => panel.topics.has(topic))) panel.draw(topics, ids);
  }
  const done = waiters;
  waiters = [];
  for (const resolve of done) resolve();
}

// Resolves once what has changed so far is on screen.
export function drawn() {
  if (!scheduled && pending.size === 0) return Promise.resolve();
  return new Promise((resolve) => waiters.push(resolve));
}

// Resolves once what has changed so far is on screen and painted: a task queued from the frame
// that drew it runs after that frame's style, layout and paint.
export function painted() {
  return drawn().then(() => new Promise((resolve) => setTimeout(resolve, 0)));
}

export function select(id) {
  store.selected = store.selected === id ? null : id;
  changed("selection");
}
