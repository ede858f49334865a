// The REST API (docs/api.md) with the session's bearer token. The token lives in
// sessionStorage only: never in a URL, a cookie or localStorage.

const TOKEN_KEY = "aerogrid.token";
const listeners = new Set();

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** Called with the error when the server no longer accepts the token (401). */
export function onUnauthorized(listener) {
  listeners.add(listener);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** A sentence for a business user, with the server's own reason kept. */
  get friendly() {
    switch (this.code) {
      case "network": return `The AeroGrid server can't be reached. Check your connection and try again. (${this.message})`;
      case "unauthorized": return "Your sign-in is no longer valid: the token may have been revoked. Sign in again.";
      case "forbidden": return `Your token's role does not allow this. ${this.message}`;
      case "not_found": return `It no longer exists: ${this.message}`;
      case "over_quota": return `Your team's quota does not allow this: ${this.message}`;
      case "invalid_bundle": return `The bundle was refused: ${this.message}`;
      case "too_large": return `The bundle is too large: ${this.message}`;
      case "bad_request": return `The server did not accept this: ${this.message}`;
      case "conflict": return `It already exists: ${this.message}`;
      case "not_ready": return `The server is not ready yet: ${this.message}`;
      default: return `Something went wrong on the server (${this.status || "no answer"}): ${this.message}`;
    }
  }
}

/** One request; resolves to the parsed JSON (or null for 204), throws ApiError. */
export async function request(method, path, { json, body, contentType, signal, accept = "application/json", raw = false } = {}) {
  const headers = { Accept: accept };
  const secret = token();
  if (secret) headers.Authorization = `Bearer ${secret}`;
  if (json !== undefined) {
    body = JSON.stringify(json);
    contentType = "application/json";
  }
  if (contentType) headers["Content-Type"] = contentType;
  let response;
  try {
    response = await fetch(path, { method, headers, body, signal, cache: "no-store", credentials: "omit", redirect: "error" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", error.message || "no answer");
  }
  if (raw && response.ok) return response;
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const code = data?.error?.code || (response.status === 401 ? "unauthorized" : "http_" + response.status);
    const message = data?.error?.message || text.slice(0, 300) || response.statusText || `HTTP ${response.status}`;
    const error = new ApiError(response.status, code, message);
    if (response.status === 401) for (const listener of listeners) listener(error);
    throw error;
  }
  return data;
}

const enc = encodeURIComponent;

export const api = {
  apps: () => request("GET", "/api/v1/apps").then((d) => d.apps),
  app: (name) => request("GET", `/api/v1/apps/${enc(name)}`),
  action: (name, action) => request("POST", `/api/v1/apps/${enc(name)}/${action}`),
  deleteApp: (name) => request("DELETE", `/api/v1/apps/${enc(name)}`),
  deploy: (bytes) => request("POST", "/api/v1/apps", { body: bytes, contentType: "application/zip" }),
  grids: (name) => request("GET", `/api/v1/apps/${enc(name)}/grids`).then((d) => d.grids),
  gridCSV: (app, grid) => request("GET", `/api/v1/apps/${enc(app)}/grids/${enc(grid)}?format=csv`, { accept: "text/csv", raw: true }),
  logs: (name, { tail = 200, follow = false, signal } = {}) =>
    request("GET", `/api/v1/apps/${enc(name)}/logs?tail=${tail}${follow ? "&follow=true" : ""}`,
      { signal, raw: follow, accept: follow ? "application/x-ndjson" : "application/json" }),
  quota: () => request("GET", "/api/v1/quota"),
  tokens: () => request("GET", "/api/v1/tokens").then((d) => d.tokens),
  createToken: (name, role) => request("POST", "/api/v1/tokens", { json: { name, role } }),
  revokeToken: (id) => request("DELETE", `/api/v1/tokens/${enc(id)}`),
  tenants: () => request("GET", "/api/v1/tenants").then((d) => d.tenants),
  tenant: (name) => request("GET", `/api/v1/tenants/${enc(name)}`),
  createTenant: (name, topics) => request("POST", "/api/v1/tenants", { json: topics ? { name, topics } : { name } }),
  deleteTenant: (name) => request("DELETE", `/api/v1/tenants/${enc(name)}`),
  tenantQuota: (name) => request("GET", `/api/v1/tenants/${enc(name)}/quota`),
  setTenantQuota: (name, values) => request("PUT", `/api/v1/tenants/${enc(name)}/quota`, { json: values }),
  appQuota: (tenant, app) => request("GET", `/api/v1/tenants/${enc(tenant)}/apps/${enc(app)}/quota`),
  setAppQuota: (tenant, app, values) => request("PUT", `/api/v1/tenants/${enc(tenant)}/apps/${enc(app)}/quota`, { json: values }),
  acl: (name) => request("GET", `/api/v1/tenants/${enc(name)}/acl`).then((d) => d.topics),
  setACL: (name, topics) => request("PUT", `/api/v1/tenants/${enc(name)}/acl`, { json: { topics } }).then((d) => d.topics),
};
