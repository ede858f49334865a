// The add-in's files without a server: functions.json and the script's
// CustomFunctions.associate calls match one to one; the manifest is well-formed and has what
// Office requires for custom functions in a shared runtime, every URL https once the server
// fills in its address; the core's grid replica, key order and subscription sharing.
//
//   node --experimental-websocket --test Tests/Excel/

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { test, describe } from "node:test";
import { createRequire } from "node:module";
import { ADDIN, Invocation, loadAddin, plain } from "./excel-runtime.mjs";

const require = createRequire(import.meta.url);
const Core = require(path.join(ADDIN, "aerogrid-core.js"));
const metadata = JSON.parse(fs.readFileSync(path.join(ADDIN, "functions.json"), "utf8"));
const BASE = "https://aerogrid.example.com:8443";

// --------------------------------------------------------------------------------------------
// functions.json and the script

describe("functions.json and functions.js", () => {
  test("every id in functions.json is associated once, and nothing else is", () => {
    const addin = loadAddin({ server: "http://127.0.0.1:9", token: "agt_x" });
    try {
      const ids = metadata.functions.map((f) => f.id);
      assert.deepEqual([...addin.functions.keys()].sort(), [...ids].sort());
      assert.equal(new Set(ids).size, ids.length, "an id twice in functions.json");
      // The source says the same: one associate call per id, with a literal id.
      const source = fs.readFileSync(path.join(ADDIN, "functions.js"), "utf8");
      const calls = [...source.matchAll(/CustomFunctions\.associate\(\s*"([^"]+)"/g)].map((m) => m[1]);
      assert.deepEqual([...calls].sort(), [...ids].sort());
      // Each function takes its parameters and then the invocation.
      for (const f of metadata.functions) {
        assert.equal(addin.functions.get(f.id).length, f.parameters.length + 1, `${f.id}'s arity`);
      }
    } finally {
      addin.close();
    }
  });

  test("the metadata: AEROGRID's GRID, VALUE and APPS, all streaming", () => {
    const byId = Object.fromEntries(metadata.functions.map((f) => [f.id, f]));
    assert.deepEqual(Object.keys(byId).sort(), ["APPS", "GRID", "VALUE"]);
    for (const f of metadata.functions) {
      assert.match(f.id, /^[A-Za-z0-9.]+$/);
      assert.equal(f.name, f.id);
      assert.ok(f.description, `${f.id} has a description`);
      assert.deepEqual(f.options, { stream: true }, `${f.id} streams (and is therefore not also cancelable/volatile)`);
      let optional = false;
      for (const p of f.parameters) {
        assert.ok(["string", "number", "boolean", "any"].includes(p.type), `${f.id}.${p.name} type`);
        if (optional) assert.ok(p.optional, `${f.id}: a required parameter after an optional one`);
        optional = optional || !!p.optional;
      }
    }
    assert.deepEqual(byId.GRID.parameters.map((p) => p.name), ["app", "grid", "columns"]);
    assert.equal(byId.GRID.result.dimensionality, "matrix");
    assert.ok(byId.GRID.parameters[2].optional);
    assert.deepEqual(byId.VALUE.parameters.map((p) => p.name), ["app", "grid", "key", "column"]);
    assert.equal(byId.VALUE.result.dimensionality, "scalar");
    assert.deepEqual(byId.APPS.parameters, []);
    assert.equal(byId.APPS.result.dimensionality, "matrix");
  });

  test("without a token or a server, cells say what to do, and nothing connects", () => {
    const addin = loadAddin({ server: "https://aerogrid.example.com:8443" });
    try {
      const grid = addin.invoke("GRID", "ordersapp", "product_sum", null);
      const value = addin.invoke("VALUE", "ordersapp", "product_sum", "Widget", "units_sold");
      const apps = addin.invoke("APPS");
      assert.match(grid.value[0][0], /^AeroGrid: no token set/);
      assert.equal(grid.value.length, 1);
      assert.match(value.value, /^AeroGrid: no token set/);
      assert.match(apps.value[0][0], /^AeroGrid: no token set/);
      assert.equal(addin.sockets.length, 0);
    } finally {
      addin.close();
    }
    const noServer = loadAddin({ token: "agt_x" });
    try {
      assert.match(noServer.invoke("GRID", "a", "b", null).value[0][0], /^AeroGrid: no server set/);
    } finally {
      noServer.close();
    }
  });

  test("missing arguments are messages in the cell", () => {
    const addin = loadAddin({ server: "http://127.0.0.1:9", token: "agt_x" });
    try {
      assert.deepEqual(addin.invoke("GRID", "", "product_sum", null).value, [["AeroGrid: the app's name is missing"]]);
      assert.deepEqual(addin.invoke("GRID", "ordersapp", null, null).value, [["AeroGrid: the grid's name is missing"]]);
      assert.equal(addin.invoke("VALUE", "ordersapp", "product_sum", "Widget", "").value, "AeroGrid: the column's name is missing");
    } finally {
      addin.close();
    }
  });
});

// --------------------------------------------------------------------------------------------
// The manifest

/** The XML as a tree ({tag, attrs, text, children}, namespaces as {uri}local), parsed by
 * Python's expat: a document that is not well-formed fails here. */
function parseXml(text) {
  const script = `
import json, sys, xml.etree.ElementTree as ET
def tree(e):
    return {"tag": e.tag, "attrs": dict(e.attrib), "text": (e.text or "").strip(), "children": [tree(c) for c in e]}
print(json.dumps(tree(ET.fromstring(sys.stdin.buffer.read()))))
`;
  const run = spawnSync("python3", ["-c", script], { input: text, encoding: "utf8" });
  assert.equal(run.status, 0, `the manifest is not well-formed XML: ${run.stderr}`);
  return JSON.parse(run.stdout);
}

const NS = {
  app: "{http://schemas.microsoft.com/office/appforoffice/1.1}",
  ov: "{http://schemas.microsoft.com/office/taskpaneappversionoverrides}",
  bt: "{http://schemas.microsoft.com/office/officeappbasictypes/1.0}",
  xsi: "{http://www.w3.org/2001/XMLSchema-instance}",
};

function child(node, tag, where = () => true) {
  return node.children.find((c) => c.tag === tag && where(c));
}

function find(node, pathTags) {
  let current = node;
  for (const step of pathTags) {
    const [tag, where] = Array.isArray(step) ? step : [step, () => true];
    current = current && child(current, tag, where);
  }
  return current;
}

function walk(node, visit) {
  visit(node);
  for (const c of node.children) walk(c, visit);
}

/** The manifest as the server serves it, for a request to `base`. */
export function substituted(base = BASE) {
  return fs.readFileSync(path.join(ADDIN, "manifest.xml"), "utf8").replaceAll("{{AEROGRID_BASE_URL}}", base);
}

/** Checks a served manifest: the elements Office needs for custom functions with a shared
 * runtime, every URL https and under `base`/excel/. Answers {urls, root}. */
export function checkManifest(text, base = BASE) {
  assert.ok(!text.includes("{{"), "a placeholder left in the manifest");
  const root = parseXml(text);
  assert.equal(root.tag, `${NS.app}OfficeApp`);
  assert.equal(root.attrs[`${NS.xsi}type`], "TaskPaneApp");

  // The top level, in the schema's order.
  const order = ["Id", "Version", "ProviderName", "DefaultLocale", "DisplayName", "Description", "IconUrl",
    "HighResolutionIconUrl", "SupportUrl", "AppDomains", "Hosts", "Requirements", "DefaultSettings", "Permissions", "VersionOverrides"];
  const tags = root.children.map((c) => c.tag.replace(NS.app, "").replace(NS.ov, ""));
  assert.deepEqual(tags, order);
  assert.match(child(root, `${NS.app}Id`).text, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.match(child(root, `${NS.app}Version`).text, /^\d+\.\d+\.\d+\.\d+$/);
  assert.equal(find(root, [`${NS.app}Hosts`, `${NS.app}Host`]).attrs.Name, "Workbook");
  const set = find(root, [`${NS.app}Requirements`, `${NS.app}Sets`, `${NS.app}Set`]);
  assert.deepEqual(set.attrs, { Name: "SharedRuntime", MinVersion: "1.1" });
  assert.equal(child(root, `${NS.app}Permissions`).text, "ReadWriteDocument");

  const overrides = child(root, `${NS.ov}VersionOverrides`);
  assert.equal(overrides.attrs[`${NS.xsi}type`], "VersionOverridesV1_0");
  const host = find(overrides, [`${NS.ov}Hosts`, `${NS.ov}Host`]);
  assert.equal(host.attrs[`${NS.xsi}type`], "Workbook");
  assert.equal(host.children[0].tag, `${NS.ov}Runtimes`, "Runtimes comes first in the Host");
  const runtime = find(host, [`${NS.ov}Runtimes`, `${NS.ov}Runtime`]);
  assert.equal(runtime.attrs.lifetime, "long");
  const shared = runtime.attrs.resid;

  const functions = find(host, [`${NS.ov}AllFormFactors`, [`${NS.ov}ExtensionPoint`, (e) => e.attrs[`${NS.xsi}type`] === "CustomFunctions"]]);
  assert.ok(functions, "a CustomFunctions extension point");
  const script = find(functions, [`${NS.ov}Script`, `${NS.ov}SourceLocation`]).attrs.resid;
  const page = find(functions, [`${NS.ov}Page`, `${NS.ov}SourceLocation`]).attrs.resid;
  const meta = find(functions, [`${NS.ov}Metadata`, `${NS.ov}SourceLocation`]).attrs.resid;
  const namespace = child(functions, `${NS.ov}Namespace`).attrs.resid;
  assert.equal(page, shared, "the functions' page is the shared runtime's");
  const desktop = child(host, `${NS.ov}DesktopFormFactor`);
  assert.equal(child(desktop, `${NS.ov}FunctionFile`).attrs.resid, shared, "FunctionFile is the shared runtime's");
  const actions = [];
  walk(desktop, (n) => { if (n.tag === `${NS.ov}Action`) actions.push(n); });
  assert.ok(actions.length > 0, "a button opens the task pane");
  for (const action of actions) {
    assert.equal(action.attrs[`${NS.xsi}type`], "ShowTaskpane");
    assert.equal(child(action, `${NS.ov}SourceLocation`).attrs.resid, shared, "the task pane is the shared runtime's page");
  }

  // Every resid resolves, the namespace is AEROGRID.
  const resources = child(overrides, `${NS.ov}Resources`);
  const ids = new Map();
  walk(resources, (n) => { if (n.attrs.id && n.attrs.DefaultValue !== undefined) ids.set(n.attrs.id, n); });
  walk(overrides, (n) => {
    if (n.attrs.resid) assert.ok(ids.has(n.attrs.resid), `resid ${n.attrs.resid} has no resource`);
  });
  assert.equal(ids.get(namespace).attrs.DefaultValue, "AEROGRID");
  assert.equal(ids.get(namespace).tag, `${NS.bt}String`);
  for (const [resid, file] of [[shared, "taskpane.html"], [script, "functions.js"], [meta, "functions.json"]]) {
    assert.equal(ids.get(resid).tag, `${NS.bt}Url`);
    assert.equal(ids.get(resid).attrs.DefaultValue, `${base}/excel/${file}`);
  }

  // Every URL: https, on the server, under /excel/.
  const urls = [];
  walk(root, (n) => {
    const local = n.tag.replace(/^\{[^}]*\}/, "");
    if (["IconUrl", "HighResolutionIconUrl", "SupportUrl", "SourceLocation", "LearnMoreUrl"].includes(local) && n.attrs.DefaultValue) urls.push(n.attrs.DefaultValue);
    if ((n.tag === `${NS.bt}Url` || n.tag === `${NS.bt}Image`) && n.attrs.id) urls.push(n.attrs.DefaultValue);
    if (local === "AppDomain") urls.push(n.text);
  });
  assert.ok(urls.length >= 10, `found ${urls.length} URLs`);
  for (const url of urls) {
    assert.match(url, /^https:\/\//, `not https: ${url}`);
    assert.ok(url === base || url.startsWith(`${base}/excel/`), `not on the server's /excel/: ${url}`);
  }
  return { urls, root };
}

describe("manifest.xml", () => {
  test("is well-formed, has what Office needs for custom functions in a shared runtime, and every URL is https", () => {
    const { urls } = checkManifest(substituted());
    // Each file it names is in clients/excel.
    for (const url of urls) {
      const relative = url.slice(`${BASE}/excel/`.length);
      if (url === BASE || relative === "") continue;
      assert.ok(fs.existsSync(path.join(ADDIN, relative)), `${relative} is named by the manifest but missing`);
    }
  });

  test("names the server only through the placeholder", () => {
    const text = fs.readFileSync(path.join(ADDIN, "manifest.xml"), "utf8");
    const http = [...text.matchAll(/https?:\/\/[^"<\s]+/g)].map((m) => m[0]).filter((u) => !u.startsWith("http://schemas.") && !u.startsWith("http://www.w3.org/"));
    assert.deepEqual(http, [], "URLs written out instead of {{AEROGRID_BASE_URL}}");
  });

  test("the task pane page loads Office.js, the core, the functions and the pane, with no inline script", () => {
    const html = fs.readFileSync(path.join(ADDIN, "taskpane.html"), "utf8");
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    assert.deepEqual(scripts.map((m) => /src="([^"]+)"/.exec(m[1])?.[1]),
      ["https://appsforoffice.microsoft.com/lib/1/hosted/office.js", "aerogrid-core.js", "functions.js", "taskpane.js"]);
    for (const m of scripts) assert.equal(m[2].trim(), "", "an inline script (the server's CSP refuses it)");
    assert.ok(!/\son[a-z]+="/i.test(html), "an inline event handler (the CSP refuses it)");
  });
});

// --------------------------------------------------------------------------------------------
// The core without a server

describe("the core", () => {
  test("a replica: snapshot, merged deltas, deleted rows, 42 and \"42\" apart, the server's key order", () => {
    const replica = new Core.GridReplica();
    replica.applySnapshot({ epoch: 1, version: 5, columns: ["a", "b"], rows: [[7, { a: 1 }], [42, { a: 2, b: "x" }], ["42", { a: 3 }]] });
    replica.applyDelta({ epoch: 1, version: 6, rows: [[-1, { a: 0 }], [7, { b: true }], [42, null], ["Zeta", { a: 4 }], ["alpha", { c: 9 }]] });
    assert.deepEqual(replica.sortedRows().map((r) => r.key), [-1, 7, "42", "Zeta", "alpha"]);
    assert.deepEqual(replica.row(7).cells, { a: 1, b: true });
    assert.equal(replica.row(42), null);
    assert.deepEqual(replica.row("42").cells, { a: 3 });
    assert.deepEqual(replica.allColumns(), ["a", "b", "c"]);
    const sub = { replica };
    assert.deepEqual(Core.gridMatrix(sub, null), [["key", "a", "b", "c"], [-1, 0, "", ""], [7, 1, true, ""], ["42", 3, "", ""],
      ["Zeta", 4, "", ""], ["alpha", "", "", 9]]);
    assert.deepEqual(Core.gridMatrix(sub, ["c", "nope"]), [["key", "c", "nope"], [-1, "", ""], [7, "", ""], ["42", "", ""], ["Zeta", "", ""], ["alpha", 9, ""]]);
    replica.applySnapshot({ epoch: 2, version: 1, columns: ["a"], rows: [] });
    assert.deepEqual(Core.gridMatrix(sub, null), [["key", "a"]]);
  });

  test("keys: code-point order of NFC forms, Excel's numbers as either kind of key", () => {
    const keys = ["b", "\u{1F600}", "\uFFFD", "A", "e\u0301", "\u00e9", 10, 2, -3];
    assert.deepEqual([...keys].sort(Core.compareKeys), [-3, 2, 10, "A", "b", "e\u0301", "\u00e9", "\uFFFD", "\u{1F600}"].sort(Core.compareKeys));
    assert.deepEqual([...keys].sort(Core.compareKeys).slice(0, 5), [-3, 2, 10, "A", "b"]);
    assert.equal(Core.compareKeys("\uFFFD", "\u{1F600}"), -1, "code points, not UTF-16 units");
    assert.equal(Core.compareKeys("e\u0301", "\u00e9"), 0, "compared as NFC");
    assert.deepEqual(Core.keyCandidates(42), [42, "42"]);
    assert.deepEqual(Core.keyCandidates(4.5), ["4.5"]);
    assert.deepEqual(Core.keyCandidates("42"), ["42", 42]);
    assert.deepEqual(Core.keyCandidates("Widget"), ["Widget"]);
    assert.equal(Core.streamUrl("https://h:8443/"), "wss://h:8443/api/v1/stream");
    assert.equal(Core.streamUrl("http://127.0.0.1:8080"), "ws://127.0.0.1:8080/api/v1/stream");
    assert.equal(Core.streamUrl("aerogrid.example.com"), "wss://aerogrid.example.com/api/v1/stream");
    assert.deepEqual(Core.readSettings(null, "https://h"), { server: "https://h", token: "", maxRate: 2 });
  });

  test("a connection (to a fake socket): shared subscriptions, linger, resubscription after a drop, no retry after a refusal", async () => {
    const sockets = [];
    class FakeSocket {
      constructor(url) { this.url = url; this.readyState = 0; this.sent = []; sockets.push(this); }
      send(text) { this.sent.push(JSON.parse(text)); }
      close() { this.readyState = 3; }
      open() { this.readyState = 1; this.onopen?.(); }
      receive(message) { this.onmessage?.({ data: JSON.stringify(message) }); }
      drop() { this.readyState = 3; this.onclose?.({ code: 1006 }); }
    }
    const connection = new Core.Connection({ server: "https://h", token: "agt_t", WebSocket: FakeSocket, lingerMs: 20, backoff: { initial: 10, max: 20 } });
    const seen = [];
    const one = connection.subscribe({ app: "a", grid: "g" }, (sub) => seen.push(["one", sub.replica.version]));
    const two = connection.subscribe({ app: "a", grid: "g" }, (sub) => seen.push(["two", sub.replica.version]));
    const other = connection.subscribe({ app: "a", grid: "g", columns: ["x"] }, () => {});
    assert.equal(sockets.length, 1);
    assert.equal(sockets[0].url, "wss://h/api/v1/stream");
    sockets[0].open();
    const subscribes = () => sockets.at(-1).sent.filter((m) => m.op === "subscribe");
    assert.deepEqual(sockets[0].sent[0], { op: "auth", token: "agt_t" });
    assert.equal(subscribes().length, 2, "two cells alike share one subscription");
    assert.ok(subscribes().every((m) => m.max_rate === 2));
    const id = subscribes()[0].id;
    sockets[0].receive({ type: "ready", tenant: "t" });
    sockets[0].receive({ type: "subscribed", id });
    sockets[0].receive({ type: "snapshot", id, epoch: 1, version: 3, columns: ["x"], rows: [["k", { x: 1 }]] });
    assert.deepEqual(seen.filter((s) => s[1] !== null), [["one", 3], ["two", 3]]);
    one.close();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(sockets[0].sent.filter((m) => m.op === "unsubscribe").length, 0, "one cell still uses it");
    two.close();
    assert.equal(sockets[0].sent.filter((m) => m.op === "unsubscribe").length, 0, "lingers first");
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(sockets[0].sent.filter((m) => m.op === "unsubscribe"), [{ op: "unsubscribe", id }]);

    // A drop: a new socket after the backoff, with the remaining subscription again.
    sockets[0].drop();
    assert.equal(connection.state, "waiting");
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(sockets.length, 2);
    sockets[1].open();
    assert.deepEqual(subscribes().map((m) => m.columns), [["x"]]);

    // A refused token: no more sockets until the settings change.
    sockets[1].receive({ type: "error", code: "unauthorized", message: "the token is not valid (unknown or revoked)" });
    assert.equal(connection.state, "refused");
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(sockets.length, 2);
    assert.match(Core.statusMessage(connection, null, true), /refused the token/);
    connection.configure({ token: "agt_other" });
    assert.equal(sockets.length, 3);
    other.close();
    connection.close();
  });

  test("an invocation gets no value after onCanceled", () => {
    const invocation = new Invocation("GRID", []);
    invocation.setResult([[1]]);
    invocation.cancel();
    assert.throws(() => invocation.setResult([[2]]));
    assert.deepEqual(plain(invocation.value), [[1]]);
  });
});
