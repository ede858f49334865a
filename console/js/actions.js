// Start, stop, restart, delete and deploy, shared by the apps page and an app's page.
import { api } from "./api.js";
import { h, replace, notice, toast, confirmDialog } from "./ui.js";
import { forget, rememberZip, filesFromFolder } from "./bundles.js";
import { writeZip } from "./zip.js";

const DOING = { start: "Starting…", stop: "Stopping…", restart: "Restarting…" };
const DONE = { start: "is starting", stop: "is stopping", restart: "is restarting" };

/** Runs an action for `name`; shows progress on the button and errors in `slot`. */
export async function runAction(context, name, action, button, slot) {
  const label = button.textContent;
  button.setAttribute("aria-disabled", "true");
  button.textContent = DOING[action];
  if (slot) replace(slot);
  try {
    const askedAt = performance.now();
    const app = await api.action(name, action);
    context.session.apps.applyAnswer(app, askedAt);
    toast(`${name} ${DONE[action]}.`);
  } catch (error) {
    if (slot) replace(slot, notice("error", `Could not ${action} ${name}.`, h("p", {}, error.friendly || String(error))));
    else toast(error.friendly || String(error), "error", 8);
  } finally {
    button.removeAttribute("aria-disabled");
    if (button.textContent === DOING[action]) button.textContent = label;
    context.session.apps.notify("answer", name);
  }
}

/** Asks, then deletes. Resolves true when deleted. */
export async function deleteApp(context, name, slot) {
  const sure = await confirmDialog({
    title: `Delete ${name}?`,
    text: `The app stops, and its grids and saved state are removed for good. Excel sheets and dashboards that show its grids stop updating. This cannot be undone.`,
    confirm: `Delete ${name}`,
  });
  if (!sure) return false;
  try {
    await api.deleteApp(name);
    context.session.apps.removed(name);
    await forget(context.session.tenant, name);
    toast(`${name} was deleted.`);
    return true;
  } catch (error) {
    if (slot) replace(slot, notice("error", `Could not delete ${name}.`, h("p", {}, error.friendly || String(error))));
    else toast(error.friendly || String(error), "error", 8);
    return false;
  }
}

/** Uploads a zip; keeps its files for the editor. Resolves to the App, or throws ApiError. */
export async function deployZip(context, bytes) {
  const askedAt = performance.now();
  const app = await api.deploy(bytes);
  context.session.apps.applyAnswer(app, askedAt);
  await rememberZip(context.session.tenant, app, bytes, app);
  return app;
}

/** The result of a deploy as a notice. */
export function deployedNotice(app, created) {
  const next = app.desired_state === "running"
    ? "It is restarting on the new version now."
    : "It is stopped: start it when you are ready.";
  return notice("ok", `Deployed ${app.name}, version ${app.version}.`,
    h("p", {}, created ? `A new app. ${next}` : next, " ", h("a", { href: `#/apps/${encodeURIComponent(app.name)}` }, `Open ${app.name}`)));
}

export function refusedNotice(error) {
  const title = error.code === "invalid_bundle" || error.code === "too_large"
    ? "The bundle was refused."
    : error.code === "over_quota" ? "Your team's quota does not allow this deploy." : "The deploy failed.";
  const reason = error.code === "invalid_bundle" || error.code === "too_large" || error.code === "over_quota"
    ? error.message : (error.friendly || String(error));
  return notice("error", title, h("p", { class: "refusal-reason" }, reason),
    error.code === "invalid_bundle"
      ? h("p", { class: "small" }, "A bundle is a zip of the app's folder with app.toml at its top level, next to the app's code.")
      : null);
}

/** The deploy panel: a zip or a folder. */
export function deployPanel(context) {
  const result = h("div", { id: "deploy-result", "aria-live": "polite" });
  const zipInput = h("input", { type: "file", id: "deploy-file", accept: ".zip,application/zip", "aria-describedby": "deploy-hint" });
  const folderInput = h("input", { type: "file", id: "deploy-folder", webkitdirectory: true, multiple: true, class: "visually-hidden", tabindex: "-1", "aria-hidden": "true" });
  const deployButton = h("button", { type: "submit", class: "button primary", id: "deploy-submit" }, "Deploy");
  const folderButton = h("button", { type: "button", class: "button", id: "deploy-folder-button" }, "Deploy a folder…");
  folderButton.addEventListener("click", () => folderInput.click());

  async function upload(bytes, what) {
    deployButton.disabled = true;
    folderButton.disabled = true;
    replace(result, h("p", { class: "muted" }, `Uploading ${what}…`));
    try {
      const app = await deployZip(context, bytes);
      replace(result, deployedNotice(app, app.version === 1));
      zipInput.value = "";
    } catch (error) {
      replace(result, refusedNotice(error));
    } finally {
      deployButton.disabled = false;
      folderButton.disabled = false;
    }
  }

  const form = h("form", { class: "inline-form", method: "post", action: "#" },
    h("div", { class: "field" }, h("label", { for: "deploy-file" }, "App bundle (.zip)"), zipInput),
    h("div", { class: "button-row" }, deployButton, folderButton, folderInput));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = zipInput.files[0];
    if (!file) {
      replace(result, notice("error", "Choose a bundle first.", h("p", {}, "Pick the app's .zip file, or deploy its folder.")));
      zipInput.focus();
      return;
    }
    await upload(new Uint8Array(await file.arrayBuffer()), file.name);
  });
  folderInput.addEventListener("change", async () => {
    if (!folderInput.files.length) return;
    const files = await filesFromFolder(folderInput.files);
    folderInput.value = "";
    if (!files.length) {
      replace(result, notice("error", "That folder has no files to deploy.", h("p", {}, "Choose the app's folder: the one holding app.toml.")));
      return;
    }
    await upload(writeZip(files), `the folder (${files.length} files)`);
  });
  return h("section", { class: "panel", "aria-labelledby": "deploy-heading" },
    h("h2", { id: "deploy-heading" }, "Deploy an app"),
    h("p", { class: "muted small", id: "deploy-hint" },
      "Upload the app's bundle: a zip of its folder with app.toml and its code. A bundle for an app that exists deploys a new version of it."),
    form, result);
}
