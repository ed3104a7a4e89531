// The mkd dashboard's entry point: wires the panels (host and pool, CPU map, memory map,
// instances, the selected instance's details and console, images, event log) and starts the live updates. Everything is read from and sent to
// /v1; the daemon stays the only judge of what is allowed.
// User Timing marks: "mkd:first-render" once the first screen is painted (host, pool, images, the
// maps and the first page of instances), "mkd:all-instances" once every instance is.

import { request } from "./api.js";
import { setUpConsole } from "./console.js";
import { setUpCpuMap } from "./cpumap.js";
import { setUpDetails } from "./details.js";
import { $ } from "./dom.js";
import { setUpEventLog } from "./eventlog.js";
import "./fleet_panel.js"; // on its own: shown only when the daemon has [fleet]
import { loadImages, setUpImages } from "./images.js";
import { loadFirstPage, revealInstance, setUpInstances } from "./instances.js";
import { connectEvents, reloadAll } from "./live.js";
import { setUpMemoryMap } from "./memmap.js";
import { clearProblem, showProblem } from "./messages.js";
import { loadHost, loadPool, setUpPoolEditor } from "./pool.js";
import { painted } from "./store.js";

const RETRY_DELAY_MS = 2000;

// Ask for a token and trade it for the HttpOnly session cookie (POST /v1/session): the browser's
// EventSource cannot send an Authorization header, a cookie it sends by itself.
function signIn() {
  const form = $("login-form");
  form.hidden = false;
  return new Promise((resolve) => {
    const onSubmit = async (event) => {
      event.preventDefault();
      try {
        await request("POST", "/v1/session", { token: form.elements.token.value });
        form.hidden = true;
        form.removeEventListener("submit", onSubmit);
        clearProblem();
        resolve();
      } catch (error) {
        showProblem(error, "Signing in");
      }
    };
    form.addEventListener("submit", onSubmit);
  });
}

// The first screen's reads besides the host, together; resolves with the [error, what] of those
// that failed, to be shown once the host is read.
function readFirstScreen() {
  const reads = [[loadPool, "Reading the pool"], [loadImages, "Listing images"], [loadFirstPage, "Reading instances"]];
  return Promise.all(reads.map(([read, what]) => read().then(() => null, (error) => [error, what])))
    .then((failed) => failed.filter(Boolean));
}

async function start() {
  $("message-dismiss").addEventListener("click", clearProblem);
  setUpPoolEditor();
  setUpImages();
  setUpInstances({ loadImages });
  setUpCpuMap({ reveal: revealInstance });
  setUpMemoryMap({ reveal: revealInstance });
  setUpEventLog();
  setUpDetails();
  setUpConsole();
  // The first screen (host, pool, images, the maps and the table's first page) is drawn from
  // reads that index.html preloads, so they start with the page rather than once its scripts
  // have loaded, and they do not wait for the event stream. Once the stream is open everything is
  // read again (reloadAll), so a change made between those reads and the stream is not missed.
  const streamOpen = connectEvents(); // beyond loopback it retries until signed in
  let rest = readFirstScreen();
  for (;;) {
    try {
      await loadHost();
      break;
    } catch (error) {
      showProblem(error, "Reading the host"); // 503 while the daemon reconciles: wait and retry
      if (error.problem && error.problem.status === 401) {
        await signIn(); // beyond loopback: trade a token for the session cookie, then retry
      } else {
        await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS));
      }
      rest = readFirstScreen(); // refused or not ready like the host: again
    }
  }
  clearProblem();
  for (const [error, what] of await rest) showProblem(error, what);
  performance.mark("mkd:first-reads"); // what follows until the first render is the drawing
  await painted();
  performance.mark("mkd:first-render");
  document.body.dataset.firstRender = "true";
  await streamOpen;
  await reloadAll(); // every page of instances; drawn as they come
  await painted();
  performance.mark("mkd:all-instances");
  document.body.dataset.ready = "true";
}

start();
