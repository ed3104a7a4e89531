// The image store: list, delete, and uploads with a progress bar.

import { listAll, request, uploadImage } from "./api.js";
import { $, element } from "./dom.js";
import { formatBytes } from "./format.js";
import { showProblem } from "./messages.js";
import { store } from "./store.js";

export function renderImages() {
  $("images-body").replaceChildren(...store.images.map((image) => element("tr", { "data-testid": "image-row", "data-sha256": image.sha256 },
    element("td", {}, element("code", { title: image.sha256 }, image.sha256.slice(0, 16) + "…")),
    element("td", { "data-testid": "image-format" }, image.format),
    element("td", {}, formatBytes(image.size)),
    element("td", {}, element("button", {
      type: "button", "data-testid": "image-delete", "data-sha256": image.sha256, "aria-label": `Delete image ${image.sha256.slice(0, 12)}`,
    }, "Delete")))));
  $("images-empty").hidden = store.images.length > 0;
}

export async function loadImages() {
  store.images = await listAll("/v1/images");
  renderImages();
}

async function onDelete(event) {
  const button = event.target.closest("button[data-testid=image-delete]");
  if (!button) return;
  const sha = button.dataset.sha256;
  if (!window.confirm(`Delete image ${sha.slice(0, 12)}…?`)) return;
  button.disabled = true;
  try {
    await request("DELETE", `/v1/images/${sha}`);
  } catch (error) {
    showProblem(error, "Delete image");
  }
  await loadImages().catch((error) => showProblem(error, "Listing images"));
}

async function onUpload(event) {
  event.preventDefault();
  const file = $("upload-file").files[0];
  if (!file) return;
  const progress = $("upload-progress");
  const status = $("upload-status");
  const submit = $("upload-submit");
  submit.disabled = true;
  progress.hidden = false;
  progress.value = 0;
  status.textContent = `Uploading ${file.name}…`;
  try {
    const { image, created } = await uploadImage(file, (fraction) => {
      if (fraction === null) {
        progress.removeAttribute("value"); // indeterminate
      } else {
        progress.value = Math.round(fraction * 100);
        status.textContent = `Uploading ${file.name}: ${progress.value}%`;
      }
    });
    progress.value = 100;
    status.textContent = `${created ? "Stored" : "Already stored"}: ${file.name} (${image.format}, ${image.sha256.slice(0, 12)}…)`;
    event.target.reset();
    await loadImages();
  } catch (error) {
    status.textContent = `Upload of ${file.name} failed`;
    showProblem(error, "Upload image");
  } finally {
    submit.disabled = false;
  }
}

export function setUpImages() {
  $("images-body").addEventListener("click", onDelete);
  $("upload-form").addEventListener("submit", onUpload);
  renderImages();
}
