// The daemon's HTTP API as the dashboard uses it: JSON requests whose failures carry the
// problem+json body (RFC 9457), and image uploads that report progress.

export class ApiError extends Error {
  // problem: the parsed problem+json body, or a stand-in when the reply had none.
  constructor(problem) {
    super(problem.detail || problem.title || "request failed");
    this.problem = problem;
  }
}

async function problemFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's error page, say): describe the status instead.
  }
  if (body && typeof body === "object" && (body.title || body.detail)) {
    return body;
  }
  return { title: `HTTP ${response.status}`, status: response.status, detail: response.statusText || "" };
}

function networkProblem(error) {
  return { title: "Daemon unreachable", status: 0, detail: String(error && error.message ? error.message : error) };
}

// Send a request and resolve with {body, etag, status}: body is the parsed JSON (null for 204),
// etag the reply's ETag header (null without one). Reject with ApiError.
// options.body: a JSON-serialisable value; options.bytes with options.contentType: a raw body
// (a device tree, say); options.headers: extra request headers (If-Match).
export async function send(method, path, options = {}) {
  const init = { method, headers: { Accept: "application/json, application/problem+json", ...(options.headers || {}) } };
  if (options.bytes !== undefined) {
    init.headers["Content-Type"] = options.contentType || "application/octet-stream";
    init.body = options.bytes;
  } else if (options.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(networkProblem(error));
  }
  if (!response.ok) {
    throw new ApiError(await problemFrom(response));
  }
  const body = response.status === 204 ? null : await response.json();
  return { body, etag: response.headers.get("ETag"), status: response.status };
}

// Send a request; resolve with the parsed JSON body (null for 204), reject with ApiError.
export async function request(method, path, body, headers) {
  return (await send(method, path, { body, headers })).body;
}

// Every item of a paginated list ({items, next_cursor}).
export async function listAll(path) {
  const items = [];
  let cursor = null;
  do {
    const query = new URLSearchParams({ limit: "1000" });
    if (cursor) query.set("cursor", cursor);
    const page = await request("GET", `${path}?${query}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

// POST /v1/images with the file's raw bytes. XMLHttpRequest, not fetch: only it reports
// upload progress. onProgress receives a fraction in [0, 1], or null when the size is unknown.
export function uploadImage(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/images");
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("Accept", "application/json, application/problem+json");
    xhr.responseType = "text";
    xhr.upload.addEventListener("progress", (event) => {
      onProgress(event.lengthComputable && event.total > 0 ? event.loaded / event.total : null);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300 && body) {
        resolve({ image: body, created: xhr.status === 201 });
      } else if (body && (body.title || body.detail)) {
        reject(new ApiError(body));
      } else {
        reject(new ApiError({ title: `HTTP ${xhr.status}`, status: xhr.status, detail: xhr.statusText || "" }));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError(networkProblem("the upload was interrupted"))));
    xhr.addEventListener("abort", () => reject(new ApiError(networkProblem("the upload was cancelled"))));
    xhr.send(file);
  });
}
