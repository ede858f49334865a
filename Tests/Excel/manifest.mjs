// The manifest's checks, shared by the static tests (the file in the repository) and the
// live ones (the file as the server serves it, with its address filled in).

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { ADDIN } from "./excel-runtime.mjs";

export const BASE = "https://aerogrid.example.com:8443";

/** The XML as a tree ({tag, attrs, text, children}, namespaces as {uri}local), parsed by
 * Python's expat: a document that is not well-formed fails here. */
export function parseXml(text) {
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

