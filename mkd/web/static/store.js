// What the page knows, shared by the panels, and one redraw per animation frame: a burst of
// events changes the store many times but each panel redraws once, for every topic it follows.

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

const panels = []; // {topics, draw}
let pending = new Set();
let scheduled = false;
let waiters = [];

// draw(topics) runs in the frame after any of `topics` changed.
export function follow(topics, draw) {
  panels.push({ topics: new Set(topics), draw });
}

// Note what changed ("instances", "pool", "host", "selection", "events", "images").
export function changed(...topics) {
  for (const topic of topics) pending.add(topic);
  if (!scheduled) {
    scheduled = true;
    requestAnimationFrame(flush);
  }
}

function flush() {
  scheduled = false;
  const topics = pending;
  pending = new Set();
  for (const panel of panels) {
    if ([...topics].some((topic) => panel.topics.has(topic))) panel.draw(topics);
  }
  const done = waiters;
  waiters = [];
  for (const resolve of done) resolve();
}

// Resolves once what has changed so far is on screen.
export function drawn() {
  if (!scheduled) return Promise.resolve();
  return new Promise((resolve) => waiters.push(resolve));
}

export function select(id) {
  store.selected = store.selected === id ? null : id;
  changed("selection");
}
