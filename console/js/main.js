// The console's shell: sign-in, the session (who the token is), navigation and routes.
import { api, ApiError, onUnauthorized, setToken, token } from "./api.js";
// The stream client shared with the Excel add-in: a classic script that defines AeroGridStream.
import "../shared/aerogrid-stream.js";
import { AppsState } from "./apps-state.js";
import { h, replace, notice, pageTitle, field, toast } from "./ui.js";
import { renderApps } from "./apps.js";
import { renderApp } from "./app.js";
import { renderViewer } from "./viewer.js";
import { renderTokens } from "./tokens.js";
import { renderOperators } from "./operators.js";

const { Connection } = globalThis.AeroGridStream;
const main = document.getElementById("page");
let session = null; // {kind: "tenant"|"operator", tenant, role, stream, apps}
let cleanup = null;
let signInMessage = null;

/** What the session's role may do. */
export function can(what) {
  if (!session) return false;
  const role = session.role;
  switch (what) {
    case "deploy": case "control": return role === "admin" || role === "developer";
    case "tokens": return role === "admin";
    case "operate": return role === "operator";
    default: return false;
  }
}

export function currentSession() {
  return session;
}

// ---- Sign-in and out

async function startSession(secret) {
  // 30 updates a second: the viewer plays a grid of colours as an animation (the server caps
  // at 50). A page left ends its subscription at once: no need to linger, as Excel's cells do.
  const stream = new Connection({ server: location.origin, token: secret, maxRate: 30, lingerMs: 0 });
  try {
    const ready = await stream.connect();
    setToken(secret);
    const apps = new AppsState(stream);
    const current = { kind: "tenant", tenant: ready.tenant, role: ready.role, stream, apps };
    session = current;
    // A token the server stops accepting (revoked) ends the session.
    stream.onState(({ state, refusal }) => {
      if (state !== "refused" || session !== current) return;
      signOut(refusal.code === "unauthorized"
        ? "Your token is no longer accepted (it may have been revoked). Sign in again with a valid token."
        : refusal.message);
    });
    return session;
  } catch (refusal) {
    stream.close();
    if (refusal.code === "forbidden") {
      // An operator token: the stream works within one tenant. The operator routes answer it.
      setToken(secret);
      try {
        await api.tenants();
        session = { kind: "operator", tenant: null, role: "operator", stream: null, apps: null };
        return session;
      } catch (error) {
        setToken(null);
        throw error instanceof ApiError ? error : new ApiError(0, "network", String(error));
      }
    }
    throw new ApiError(0, refusal.code || "network", refusal.message || "no answer");
  }
}

export function signOut(message) {
  setToken(null);
  if (session) {
    session.apps?.close();
    session.stream?.close();
  }
  session = null;
  signInMessage = message || null;
  if (location.hash !== "#/signin") location.hash = "#/signin";
  else route();
}

onUnauthorized(() => {
  if (session) signOut("Your token is no longer accepted (it may have been revoked). Sign in again with a valid token.");
});

function renderSignIn(container) {
  const input = h("input", { type: "password", name: "token", autocomplete: "current-password", spellcheck: "false", required: true, "aria-required": "true" });
  const tokenField = field("signin-token", "Access token", input, "Paste the token your administrator gave you (it starts with agt_). It is kept only in this browser tab.");
  const message = h("div", { id: "signin-message" });
  if (signInMessage) replace(message, notice("info", null, signInMessage));
  const button = h("button", { type: "submit", class: "button primary", id: "signin-submit" }, "Sign in");
  const heading = h("h1", {}, "Sign in to AeroGrid");
  // method="post": even without this script, the token would never land in a URL.
  const form = h("form", { class: "panel", method: "post", action: "#", novalidate: true, "aria-labelledby": "signin-heading" },
    heading, h("p", { class: "muted" }, "Watch and manage your team's live data apps."), message, tokenField.field,
    h("div", { class: "button-row" }, button));
  heading.id = "signin-heading";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const secret = input.value.trim();
    if (!secret) {
      replace(message, notice("error", "Enter your access token.", h("p", {}, "The token is a long code that starts with agt_.")));
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    if (!/^[A-Za-z0-9_-]{8,256}$/.test(secret)) {
      replace(message, notice("error", "That doesn't look like a token.", h("p", {}, "A token has only letters, digits, '-' and '_' (no spaces). Copy it again from where it was given to you.")));
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    button.disabled = true;
    button.textContent = "Signing in…";
    replace(message);
    try {
      await startSession(secret);
      signInMessage = null;
      input.value = "";
      location.hash = session.kind === "operator" ? "#/operators" : "#/apps";
      route();
    } catch (error) {
      const text = error.code === "unauthorized"
        ? ["This token was not accepted.", "It may be mistyped, or it was revoked. Ask your team's administrator for a new one."]
        : error.code === "over_quota"
          ? ["Too many open console and Excel connections for your team.", error.message]
          : error.code === "network"
            ? ["The AeroGrid server can't be reached.", "Check your network connection, then try again."]
            : ["Signing in failed.", error.friendly || error.message];
      replace(message, notice("error", text[0], h("p", {}, text[1])));
      input.setAttribute("aria-invalid", "true");
      input.focus();
    } finally {
      button.disabled = false;
      button.textContent = "Sign in";
    }
  });
  replace(container, h("div", { class: "signin" }, form));
  pageTitle("Sign in");
  requestAnimationFrame(() => input.focus());
}

// ---- Chrome: navigation and the session bar

let unsubscribeStatus = null;

function renderChrome(active) {
  const nav = document.getElementById("nav");
  const list = document.getElementById("nav-list");
  const bar = document.getElementById("session");
  if (!session) {
    nav.hidden = true;
    bar.hidden = true;
    return;
  }
  const items = session.kind === "operator"
    ? [["#/operators", "Tenants", "operators"]]
    : [["#/apps", "Apps", "apps"], ...(can("tokens") ? [["#/tokens", "Tokens", "tokens"]] : [])];
  replace(list, items.map(([href, text, id]) =>
    h("li", {}, h("a", { href, "aria-current": id === active ? "page" : null }, text))));
  nav.hidden = false;
  bar.hidden = false;
  const who = document.getElementById("session-who");
  replace(who, session.kind === "operator"
    ? [h("span", { class: "badge role" }, "operator"), " Platform operator"]
    : ["Team ", h("strong", {}, session.tenant), " ", h("span", { class: "badge role" }, session.role)]);
  const connection = document.getElementById("connection");
  unsubscribeStatus?.();
  unsubscribeStatus = null;
  if (session.stream) {
    const showState = ({ state }) => {
      const live = state === "connected";
      connection.textContent = live ? "● Live" : state === "refused" || state === "closed" ? "Signed out" : "Reconnecting…";
      connection.classList.toggle("down", !live);
      connection.title = live ? "Updates arrive as they happen" : "The live connection dropped; reconnecting";
    };
    showState(session.stream.describe());
    unsubscribeStatus = session.stream.onState(showState);
  } else {
    connection.textContent = "";
  }
}

document.getElementById("sign-out").addEventListener("click", () => signOut("You are signed out."));

// ---- Routes

function parse(hash) {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  return parts;
}

export async function route() {
  const parts = parse(location.hash);
  if (cleanup) {
    try { cleanup(); } catch { /* a page's cleanup never blocks the next */ }
    cleanup = null;
  }
  if (!session && token()) {
    // A reload within the tab: the token is still in sessionStorage.
    replace(main, h("p", { class: "loading" }, "Signing in…"));
    try {
      await startSession(token());
    } catch (error) {
      setToken(null);
      signInMessage = error.code === "network"
        ? "The AeroGrid server can't be reached. Check your connection and sign in again."
        : "Your sign-in has ended. Sign in again.";
    }
  }
  if (!session) {
    renderChrome(null);
    if (location.hash !== "#/signin") history.replaceState(null, "", "#/signin");
    renderSignIn(main);
    return;
  }
  const [first, second, third, fourth] = parts;
  const context = { session, can, main };
  try {
    if (session.kind === "operator") {
      if (first !== "operators") {
        history.replaceState(null, "", "#/operators");
        renderChrome("operators");
        cleanup = renderOperators(main, {}, context);
        return;
      }
      renderChrome("operators");
      cleanup = renderOperators(main, { tenant: second }, context);
      return;
    }
    if (first === "tokens" && can("tokens")) {
      renderChrome("tokens");
      cleanup = renderTokens(main, {}, context);
    } else if (first === "apps" && second && third === "grids" && fourth) {
      renderChrome("apps");
      cleanup = renderViewer(main, { app: second, grid: fourth }, context);
    } else if (first === "apps" && second) {
      renderChrome("apps");
      cleanup = renderApp(main, { app: second, tab: third || "overview" }, context);
    } else {
      if (first !== "apps") history.replaceState(null, "", "#/apps");
      renderChrome("apps");
      cleanup = renderApps(main, {}, context);
    }
  } catch (error) {
    console.warn(error);
    replace(main, notice("error", "This page could not be shown.", h("p", {}, String(error.message || error))));
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("unhandledrejection", (event) => {
  if (event.reason?.name === "AbortError") {
    event.preventDefault();
    return;
  }
  if (event.reason instanceof ApiError) {
    event.preventDefault();
    toast(event.reason.friendly, "error", 8);
  }
});
route();
