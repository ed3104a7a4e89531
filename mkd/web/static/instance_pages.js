// The instance list as the daemon pages it (GET /v1/instances?limit&cursor, oldest id first).
// The first render needs only the first page (the table's first page by id); the rest is read
// in the background, page by page. Each page's cursor is kept, so the instances a burst of
// events names are read back a page at a time (one request for many instances) rather than with
// one GET each; only a few scattered ones are read alone.

import { ApiError, request } from "./api.js";

export const FIRST_PAGE = 100; // more than the table shows at once (instances.js PAGE_SIZE)
const PAGE = 250;
const BATCH_MIN = 3; // from this many instances on one page, the page is cheaper than single reads

// What was read as one page: the cursor that read it (null: from the start) and the last id it
// held. Page i holds the ids after pages[i-1].lastId up to pages[i].lastId.
let pages = [];
let complete = false; // the last page was reached
let reading = 0; // which readAll is current: a newer one (a reconnect's) stops an older one

function query(limit, cursor) {
  const params = new URLSearchParams({ limit: String(limit) });
  if (cursor) params.set("cursor", cursor);
  return `/v1/instances?${params}`;
}

// The first page alone, for the first screen (index.html preloads this very URL). It is not kept
// as a page: the full read that follows records its own.
export async function readFirstPage() {
  return (await request("GET", query(FIRST_PAGE, null))).items;
}

// Read every instance, page by page: onPage(items, {first, last}) for each, in id order.
// Resolves true, or false when a newer readAll took over before the end.
export async function readAll(onPage) {
  reading += 1;
  const mine = reading;
  pages = [];
  complete = false;
  let cursor = null;
  let limit = FIRST_PAGE;
  for (;;) {
    const page = await request("GET", query(limit, cursor));
    if (mine !== reading) return false; // superseded: the newer read records the pages
    const lastId = page.items.length ? page.items[page.items.length - 1].id : null;
    if (lastId !== null) pages.push({ cursor, lastId, limit });
    complete = !page.next_cursor;
    onPage(page.items, { first: cursor === null, last: complete });
    if (complete) return true;
    cursor = page.next_cursor;
    limit = PAGE;
  }
}

// Which kept page holds `id`: the index, or pages.length for an id past the last page.
function pageOf(id) {
  let low = 0;
  let high = pages.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (pages[middle].lastId >= id) high = middle;
    else low = middle + 1;
  }
  return low;
}

// Read the instances `ids` back. Returns [bodies found, ids the daemon no longer has].
export async function readSome(ids, readOne) {
  const groups = new Map(); // page index -> ids
  for (const id of ids) {
    let index = pageOf(id);
    // Past the last page (a new instance): read on from where the last page began.
    if (index === pages.length && complete && pages.length) index = pages.length - 1;
    if (!groups.has(index)) groups.set(index, []);
    groups.get(index).push(id);
  }
  const found = [];
  const gone = [];
  const single = [];
  const batches = [];
  for (const [index, group] of groups) {
    if (group.length < BATCH_MIN || index >= pages.length) single.push(...group);
    else batches.push(readPage(index, group, found, single));
  }
  await Promise.all(batches);
  await Promise.all(single.map(async (id) => {
    try {
      found.push(await readOne(id));
    } catch (error) {
      if (error instanceof ApiError && error.problem.status === 404) gone.push(id);
      else throw error;
    }
  }));
  return [found, gone];
}

// Read page `index` again; what it does not hold goes to `single`. The last page is read on to
// the end, a page at a time, and the pages it grew into are kept (with the cursors the daemon
// issued for them).
async function readPage(index, wanted, found, single) {
  const want = new Set(wanted);
  let { cursor, limit } = pages[index];
  let at = index;
  for (;;) {
    const page = await request("GET", query(limit, cursor));
    for (const item of page.items) {
      if (want.delete(item.id)) found.push(item);
    }
    const tail = at >= pages.length - 1 && complete;
    if (!tail) break;
    if (page.items.length) pages[at] = { cursor, lastId: page.items[page.items.length - 1].id, limit };
    else if (at > index) pages.length = at; // nothing there after all
    if (!page.next_cursor || ![...want].some((id) => id > pages[at].lastId)) break;
    cursor = page.next_cursor;
    limit = PAGE;
    at += 1;
    pages[at] = { cursor, lastId: Infinity, limit }; // its end is known once read
  }
  single.push(...want);
}
