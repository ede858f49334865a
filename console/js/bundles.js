// The files of the bundles this browser deployed, and the drafts being edited, kept in
// IndexedDB per tenant and app. The server keeps an app's code but has no route that hands
// it out, so this copy is what the editor opens; a user can also open a local folder or zip.
import { readZip, sha256Hex } from "./zip.js";

const DB = "aerogrid-console";
const STORE = "bundles";
let opening = null;

function db() {
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const request = indexedDB.open(DB, 1);
      request.onupgradeneeded = () => request.result.createObjectStore(STORE);
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }
  return opening;
}

async function run(mode, action) {
  const database = await db();
  return new Promise((resolve, reject) => {
    const transaction = database.transaction(STORE, mode);
    const request = action(transaction.objectStore(STORE));
    transaction.oncomplete = () => resolve(request?.result);
    transaction.onerror = () => reject(transaction.error);
    transaction.onabort = () => reject(transaction.error);
  });
}

const key = (kind, tenant, app) => `${kind}:${tenant}/${app}`;

/** {digest, version, files: [{path, bytes}], saved} of the last bundle deployed from here. */
export async function deployed(tenant, app) {
  try {
    return (await run("readonly", (store) => store.get(key("deployed", tenant, app)))) || null;
  } catch {
    return null;
  }
}

export async function rememberDeployed(tenant, app, record) {
  try {
    await run("readwrite", (store) => store.put({ ...record, saved: new Date().toISOString() }, key("deployed", tenant, app)));
  } catch {
    // Private browsing or storage full: editing still works from a local folder or zip.
  }
}

/** The working copy being edited: {base, files: [{path, bytes}], saved}. */
export async function draft(tenant, app) {
  try {
    return (await run("readonly", (store) => store.get(key("draft", tenant, app)))) || null;
  } catch {
    return null;
  }
}

export async function saveDraft(tenant, app, record) {
  try {
    await run("readwrite", (store) => store.put({ ...record, saved: new Date().toISOString() }, key("draft", tenant, app)));
  } catch {
    // not kept; the edit itself goes on
  }
}

export async function forget(tenant, app, kinds = ["draft", "deployed"]) {
  try {
    await run("readwrite", (store) => {
      let last = null;
      for (const kind of kinds) last = store.delete(key(kind, tenant, app));
      return last;
    });
  } catch {
    // nothing kept
  }
}

/** The manifest's fields from app.toml's text (the few lines a bundle needs). */
export function manifest(files) {
  const file = files.find((f) => f.path === "app.toml");
  if (!file) return null;
  const text = new TextDecoder().decode(file.bytes);
  const value = (name) => {
    const match = new RegExp(`^\\s*${name}\\s*=\\s*["']([^"']*)["']`, "m").exec(text);
    return match ? match[1] : null;
  };
  return { name: value("name"), entrypoint: value("entrypoint") || "app.py", runtime: value("runtime") };
}

/** After a deploy from this browser: keeps the zip's files with the server's digest. */
export async function rememberZip(tenant, app, zipBytes, answer) {
  try {
    const files = await readZip(zipBytes.buffer ? zipBytes.buffer.slice(zipBytes.byteOffset, zipBytes.byteOffset + zipBytes.byteLength) : zipBytes);
    const digest = await sha256Hex(zipBytes);
    await rememberDeployed(tenant, app.name, { digest, version: app.version, files: files.filter(keep) });
    return digest === answer.bundle_digest;
  } catch {
    return false;
  }
}

/** The files a bundle leaves out, as `aerogrid app deploy` does: hidden ones and __pycache__. */
export function keep(file) {
  const parts = file.path.split("/");
  return !parts.some((part) => part.startsWith(".") || part === "__pycache__") && !file.path.endsWith("/");
}

/** Files from a folder picked with <input webkitdirectory>: the folder's own name dropped. */
export async function filesFromFolder(fileList) {
  const files = [];
  for (const file of fileList) {
    const relative = file.webkitRelativePath || file.name;
    const path = relative.includes("/") ? relative.slice(relative.indexOf("/") + 1) : relative;
    const entry = { path, bytes: new Uint8Array(await file.arrayBuffer()) };
    if (keep(entry)) files.push(entry);
  }
  files.sort((a, b) => a.path.localeCompare(b.path));
  return files;
}

/** Files from a zip the user picked; a zip whose files all sit in one folder is opened from it. */
export async function filesFromZip(file) {
  let files = (await readZip(await file.arrayBuffer())).filter(keep);
  const tops = new Set(files.map((f) => (f.path.includes("/") ? f.path.split("/")[0] : "")));
  if (tops.size === 1 && !tops.has("") && !files.some((f) => f.path === "app.toml")) {
    const top = [...tops][0] + "/";
    files = files.map((f) => ({ path: f.path.slice(top.length), bytes: f.bytes }));
  }
  files.sort((a, b) => a.path.localeCompare(b.path));
  return files;
}
