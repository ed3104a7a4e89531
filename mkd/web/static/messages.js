// The message area: a refusal's problem+json (title, errno, detail), or any other failure.

import { ApiError } from "./api.js";
import { $ } from "./dom.js";

export function showProblem(error, context) {
  const problem = error instanceof ApiError ? error.problem : { title: "Unexpected error", detail: String(error) };
  const box = $("message");
  $("message-title").textContent = context ? `${context}: ${problem.title || "refused"}` : problem.title || "Refused";
  $("message-errno").textContent = problem.errno
    ? `${problem.errno}${problem.errno_value !== undefined ? ` (${problem.errno_value})` : ""}`
    : problem.status ? `HTTP ${problem.status}` : "";
  $("message-detail").textContent = problem.detail || "";
  box.dataset.status = problem.status ?? "";
  box.hidden = false;
}

export function clearProblem() {
  $("message").hidden = true;
}
