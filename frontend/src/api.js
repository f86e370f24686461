// The campaign API, called with the portal's session: same-origin cookies plus the CSRF token
// the page carries (DRF's SessionAuthentication checks it on unsafe methods).

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `The server answered ${status}.`);
    this.status = status;
    this.code = error.code || "";
    this.fields = error.fields || {};
  }
}

export function makeApi({ base, csrf }) {
  async function call(method, path, body) {
    const headers = { Accept: "application/json", "X-CSRFToken": csrf, "X-Requested-With": "fetch" };
    // A FormData body (an upload) is sent as multipart, with the boundary the browser chooses.
    const form = typeof FormData !== "undefined" && body instanceof FormData;
    if (body !== undefined && !form) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(base + path, {
        method, headers, credentials: "same-origin",
        body: body === undefined ? undefined : form ? body : JSON.stringify(body),
      });
    } catch (exc) {
      throw new ApiError(0, { error: { message: "The server cannot be reached. Check your connection." } });
    }
    let data = null;
    const text = await response.text();
    if (text) {
      try { data = JSON.parse(text); } catch (exc) { data = null; }
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }
  return {
    get: (path) => call("GET", path),
    post: (path, body) => call("POST", path, body === undefined ? {} : body),
    put: (path, body) => call("PUT", path, body),
    del: (path) => call("DELETE", path),
    /** multipart POST of `form` (FormData). */
    upload: (path, form) => call("POST", path, form),
  };
}

/** The results of a list endpoint, paginated or not. */
export function results(data) {
  if (Array.isArray(data)) return data;
  return (data && data.results) || [];
}

/** Problems carried by an error (a graph refused at publish lists them under `graph`). */
export function errorProblems(error) {
  const graph = error && error.fields && error.fields.graph;
  return Array.isArray(graph) && graph.length && typeof graph[0] === "object" ? graph : null;
}
