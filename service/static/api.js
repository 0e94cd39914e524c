// The service's JSON API, with its errors ({"error": {"message", "limit"?, "request_id"}}) as ApiError.

const KEY_STORE = "dfi-api-key";

export class ApiError extends Error {
  constructor(method, path, status, message, { requestId = null, limit = null } = {}) {
    const where = status ? `${method} ${path} → ${status}` : `${method} ${path}`;
    const extra = [limit ? `limit ${JSON.stringify(limit)}` : "", requestId ? `request ${requestId}` : ""];
    const tail = extra.filter(Boolean).join(", ");
    super(`${where}: ${message}${tail ? ` (${tail})` : ""}`);
    this.status = status;
    this.detail = message;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORE, key);
  else sessionStorage.removeItem(KEY_STORE);
}

// fetch + JSON both ways; any non-2xx (or a network failure, or a body that is not JSON) throws an ApiError.
export async function api(method, path, body = undefined) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (apiKey()) headers["x-api-key"] = apiKey();
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    throw new ApiError(method, path, 0, `network error (${error.message}); is the service running?`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  const requestId = response.headers.get("x-request-id");
  if (!response.ok) {
    const error = data && data.error;
    const message = (error && error.message) || text.slice(0, 300) || response.statusText || "no body";
    throw new ApiError(method, path, response.status, message, { requestId, limit: error && error.limit });
  }
  if (data === null) {
    throw new ApiError(method, path, response.status, `expected JSON, got: ${text.slice(0, 120) || "no body"}`, {
      requestId,
    });
  }
  return data;
}
