// Editing an app's code in the browser and deploying it as a new version.
//
// The server keeps each app's bundle but has no route that hands its files out, so the
// editor opens, in this order: the draft being edited (kept in this browser), the files of
// the last bundle this browser deployed for the app, or a folder or zip the user opens.
// When the app's running bundle is not the one those files came from (someone deployed it
// from elsewhere), the editor says so before anything is deployed over it.
import { h, replace, notice, toast, confirmDialog, field } from "./ui.js";
import { time } from "./format.js";
import { deployed, draft, saveDraft, forget, manifest, filesFromFolder, filesFromZip, rememberZip } from "./bundles.js";
import { writeZip } from "./zip.js";
import { api } from "./api.js";
import { refusedNotice } from "./actions.js";

const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

function asText(bytes) {
  if (bytes.includes(0)) return null;
  try {
    return decoder.decode(bytes);
  } catch {
    return null;
  }
}

export function renderEditor(body, app, context) {
  const { session } = context;
  const tenant = session.tenant;
  const name = app.name;
  let files = []; // {path, original: string|null (null: new file), text: string|null (null: binary), bytes}
  let base = null; // {digest, version, from: "deployed"|"local", label}
  let selected = null;
  let closed = false;
  let saveTimer = null;
  let current = app;

  const source = h("div", { id: "editor-source" });
  const result = h("div", { id: "editor-result", "aria-live": "polite" });
  const fileList = h("ul", { class: "file-list", id: "file-list", "aria-label": "Files" });
  const pane = h("div", { id: "editor-pane" });
  const zipInput = h("input", { type: "file", accept: ".zip,application/zip", class: "visually-hidden", tabindex: "-1", "aria-hidden": "true", id: "editor-open-zip" });
  const folderInput = h("input", { type: "file", webkitdirectory: true, multiple: true, class: "visually-hidden", tabindex: "-1", "aria-hidden": "true", id: "editor-open-folder" });
  const openZip = h("button", { type: "button", class: "button" }, "Open a zip…");
  const openFolder = h("button", { type: "button", class: "button" }, "Open a folder…");
  const discard = h("button", { type: "button", class: "button", id: "editor-discard" }, "Discard changes");
  const deploy = h("button", { type: "button", class: "button primary", id: "editor-deploy" }, "Deploy as a new version");
  const newName = h("input", { type: "text", spellcheck: "false", placeholder: "helpers.py" });
  const newFile = field("editor-new-name", "New file", newName);
  const addButton = h("button", { type: "submit", class: "button" }, "Add file");
  const addForm = h("form", { class: "inline-form", method: "post", action: "#" }, newFile.field, addButton);
  const workspace = h("div", { class: "editor", id: "editor" },
    h("div", {}, h("h3", { id: "files-heading" }, "Files"), fileList, addForm),
    pane);

  openZip.addEventListener("click", () => zipInput.click());
  openFolder.addEventListener("click", () => folderInput.click());

  replace(body, h("section", { class: "panel", "aria-labelledby": "editor-heading" },
    h("div", { class: "editor-head" },
      h("h2", { id: "editor-heading" }, `Code of ${name}`),
      h("div", { class: "button-row" }, openZip, openFolder, zipInput, folderInput)),
    source, result, workspace,
    h("div", { class: "button-row" }, deploy, discard)));

  // ---- Loading

  function setFiles(list, newBase) {
    files = list.map((f) => {
      const text = asText(f.bytes);
      return { path: f.path, bytes: f.bytes, text, original: f.original !== undefined ? f.original : text };
    }).sort((a, b) => (a.path === "app.toml" ? -1 : b.path === "app.toml" ? 1 : a.path.localeCompare(b.path)));
    base = newBase;
    const entry = manifest(files)?.entrypoint || "app.py";
    selected = files.find((f) => f.path === entry)?.path || files[0]?.path || null;
    draw();
  }

  async function load() {
    const saved = await draft(tenant, name);
    if (closed) return;
    if (saved && saved.files?.length) {
      setFiles(saved.files.map((f) => ({ path: f.path, bytes: f.bytes, original: f.original })), saved.base);
      return;
    }
    const last = await deployed(tenant, name);
    if (closed) return;
    if (last && last.files?.length) {
      setFiles(last.files, { digest: last.digest, version: last.version, from: "deployed", label: `version ${last.version}, deployed from this browser ${time(last.saved)}` });
      return;
    }
    files = [];
    base = null;
    draw();
  }

  // ---- Drawing

  function modified(file) {
    return file.text === null ? file.original === undefined : file.text !== file.original;
  }

  function anyChanges() {
    return base?.from === "local" || files.some(modified) || removedPaths.size > 0;
  }

  let removedPaths = new Set();

  function drawSource() {
    if (!base) {
      replace(source, notice("info", "This browser has no copy of this app's code.",
        h("p", {}, "AeroGrid keeps the code of every app it runs, but only hands it to the browser that deployed it. Open the app's folder or its zip (the bundle you deployed) to edit it here, then deploy it as a new version.")));
      return;
    }
    const parts = [];
    if (base.from === "local") parts.push(notice("info", `Opened ${base.label}.`, h("p", {}, "Deploying replaces the code the app runs now.")));
    else parts.push(h("p", { class: "muted small" }, `These are the files of ${base.label}.`));
    if (base.digest && current.bundle_digest && base.digest !== current.bundle_digest) {
      parts.push(notice("warn", `${name} now runs version ${current.version}, which was not deployed from here.`,
        h("p", {}, `These files are of ${base.from === "local" ? "your local copy" : "version " + base.version}. Deploying them replaces version ${current.version}. To edit what runs now, open that version's folder or zip.`)));
    }
    const m = manifest(files);
    if (m && m.name && m.name !== name) {
      parts.push(notice("warn", `app.toml names the app "${m.name}", not "${name}".`,
        h("p", {}, `Deploying creates or updates the app ${m.name}. Change name in app.toml to deploy a new version of ${name}.`)));
    } else if (files.length && !m) {
      parts.push(notice("warn", "There is no app.toml.", h("p", {}, "Every bundle needs an app.toml at its top level; the server refuses one without it.")));
    }
    replace(source, parts);
  }

  function draw() {
    drawSource();
    workspace.hidden = !base;
    deploy.hidden = !base;
    discard.hidden = !base;
    discard.disabled = !anyChanges();
    if (!base) return;
    replace(fileList, files.map((file) => {
      const button = h("button", { type: "button", "aria-current": file.path === selected ? "true" : null, "data-path": file.path },
        h("span", {}, file.path), modified(file) ? h("span", { class: "modified" }, file.original === null ? "new" : "edited") : null);
      button.addEventListener("click", () => {
        selected = file.path;
        draw();
        pane.querySelector("textarea")?.focus();
      });
      return h("li", {}, button);
    }));
    const file = files.find((f) => f.path === selected);
    if (!file) {
      replace(pane, h("div", { class: "empty" }, h("strong", {}, "No file selected"), "Choose a file on the left, or add one."));
      return;
    }
    const remove = h("button", { type: "button", class: "button danger-outline", id: "editor-delete-file" }, "Delete file");
    remove.addEventListener("click", async () => {
      if (!(await confirmDialog({ title: `Delete ${file.path}?`, text: "The file is left out of the next version you deploy. Discard changes brings it back.", confirm: "Delete file" }))) return;
      files = files.filter((f) => f !== file);
      if (file.original !== null) removedPaths.add(file.path);
      selected = files[0]?.path || null;
      changed();
    });
    if (file.text === null) {
      replace(pane, h("div", { class: "editor-head" }, h("h3", {}, file.path), remove),
        notice("info", "This file is not text.", h("p", {}, `It is kept as it is (${file.bytes.length} bytes) in the versions you deploy.`)));
      return;
    }
    const area = h("textarea", { class: "code", id: "editor-text", spellcheck: "false", autocapitalize: "off", wrap: "off", "data-path": file.path });
    area.value = file.text;
    area.addEventListener("input", () => {
      file.text = area.value;
      const item = fileList.querySelector(`button[data-path="${CSS.escape(file.path)}"]`);
      if (item) {
        item.querySelector(".modified")?.remove();
        if (modified(file)) item.append(h("span", { class: "modified" }, file.original === null ? "new" : "edited"));
      }
      discard.disabled = !anyChanges();
      saveSoon();
    });
    replace(pane,
      h("div", { class: "editor-head" }, h("label", { for: "editor-text" }, `Contents of ${file.path}`), remove),
      area);
  }

  function changed() {
    draw();
    saveSoon();
  }

  function saveSoon() {
    clearTimeout(saveTimer);
    saveTimer = setTimeout(saveNow, 400);
  }

  function saveNow() {
    clearTimeout(saveTimer);
    if (!base) return Promise.resolve();
    if (!anyChanges()) return forget(tenant, name, ["draft"]);
    return saveDraft(tenant, name, { base, files: files.map((f) => ({ path: f.path, bytes: bytesOf(f), original: f.original })) });
  }

  function bytesOf(file) {
    return file.text === null ? file.bytes : encoder.encode(file.text);
  }

  // ---- Actions

  addForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const path = newName.value.trim().replace(/^\.\/+/, "");
    const problem = !path ? "Enter a file name, like helpers.py."
      : path.startsWith("/") || path.split("/").some((p) => p === ".." || p === "" || p.startsWith(".")) ? "Use a relative name without '..', hidden parts or a leading '/'."
        : files.some((f) => f.path === path) ? `There is a file named ${path} already.` : null;
    if (problem) {
      replace(result, notice("error", "That file can't be added.", h("p", {}, problem)));
      newName.focus();
      return;
    }
    files.push({ path, bytes: new Uint8Array(), text: "", original: null });
    selected = path;
    newName.value = "";
    replace(result);
    changed();
    pane.querySelector("textarea")?.focus();
  });

  discard.addEventListener("click", async () => {
    if (!(await confirmDialog({ title: "Discard your changes?", text: "The files go back to how they were when they were opened or last deployed.", confirm: "Discard changes" }))) return;
    await forget(tenant, name, ["draft"]);
    removedPaths = new Set();
    replace(result);
    await load();
  });

  async function openLocal(loader, label) {
    if (anyChanges() && !(await confirmDialog({ title: "Replace your changes?", text: "Opening other files replaces the changes you have not deployed.", confirm: "Open and replace" }))) return;
    try {
      const list = await loader();
      if (!list.length) {
        replace(result, notice("error", "There are no files to open there.", h("p", {}, "Choose the app's folder (the one with app.toml) or its zip.")));
        return;
      }
      removedPaths = new Set();
      setFiles(list, { digest: null, version: null, from: "local", label });
      replace(result);
      await saveNow();
    } catch (error) {
      replace(result, notice("error", "Those files could not be opened.", h("p", {}, error.message || String(error))));
    }
  }

  zipInput.addEventListener("change", () => {
    const file = zipInput.files[0];
    zipInput.value = "";
    if (file) openLocal(() => filesFromZip(file), `the zip ${file.name}`);
  });
  folderInput.addEventListener("change", () => {
    const list = [...folderInput.files];
    folderInput.value = "";
    const folder = list[0]?.webkitRelativePath?.split("/")[0] || "folder";
    if (list.length) openLocal(() => filesFromFolder(list), `the folder ${folder}`);
  });

  deploy.addEventListener("click", async () => {
    if (deploy.disabled) return;
    const m = manifest(files);
    if (m && m.name && m.name !== name && !(await confirmDialog({
      title: `Deploy to ${m.name}?`, text: `app.toml names the app ${m.name}: deploying creates or updates ${m.name}, not ${name}.`, confirm: `Deploy ${m.name}`, danger: false,
    }))) return;
    deploy.disabled = true;
    deploy.textContent = "Deploying…";
    replace(result, h("p", { class: "muted" }, "Uploading the new version…"));
    try {
      const list = files.map((f) => ({ path: f.path, bytes: bytesOf(f) }));
      const zip = writeZip(list);
      const askedAt = performance.now();
      const answer = await api.deploy(zip);
      session.apps.applyAnswer(answer, askedAt);
      await rememberZip(tenant, answer, zip, answer);
      await forget(tenant, answer.name, ["draft"]);
      if (answer.name === name) {
        current = answer;
        removedPaths = new Set();
        setFiles(list, { digest: answer.bundle_digest, version: answer.version, from: "deployed", label: `version ${answer.version}, deployed from this browser just now` });
      }
      replace(result, notice("ok", `Deployed ${answer.name}, version ${answer.version}.`,
        h("p", {}, answer.desired_state === "running" ? "It is restarting on the new version now." : "It is stopped: start it to run the new version.")));
      toast(`${answer.name} version ${answer.version} deployed.`);
    } catch (error) {
      replace(result, refusedNotice(error));
    } finally {
      deploy.disabled = false;
      deploy.textContent = "Deploy as a new version";
    }
  });

  load();

  return {
    update(app) {
      const before = current.bundle_digest;
      current = app;
      if (before !== app.bundle_digest) drawSource();
    },
    cleanup() {
      closed = true;
      if (saveTimer) saveNow();
    },
  };
}
