// The operators' page: tenants (create with the first admin token shown once, delete), each
// tenant's quota, topic ACL and its apps' quotas. Tenant tokens are managed by the tenant's
// admins, on their Tokens page.
import { api } from "./api.js";
import { h, replace, notice, pageTitle, field, toast, confirmDialog, copyText } from "./ui.js";
import { bytes, count, cpus, number, time, parseBytes } from "./format.js";

export function renderOperators(container, { tenant }, _context) {
  const heading = h("h1", {}, "Tenants");
  const listBody = h("div", { id: "tenants-list" }, h("p", { class: "muted" }, "Loading the tenants…"));
  const detail = h("div", { id: "tenant-detail" });
  const created = h("div", { id: "tenant-created", "aria-live": "polite" });

  const nameInput = h("input", { type: "text", maxlength: "63", required: true, "aria-required": "true" });
  const topicsInput = h("input", { type: "text", spellcheck: "false" });
  const nameField = field("tenant-name", "Name", nameInput, "Lowercase letters, digits, - and _.");
  const topicsField = field("tenant-topics", "Kafka topics (optional)", topicsInput, "Comma-separated rules, e.g. orders, market.*. Empty: the tenant's own prefix (name.*).");
  const form = h("form", { method: "post", action: "#" }, nameField.field, topicsField.field,
    h("button", { type: "submit", class: "button primary", id: "tenant-create" }, "Create tenant"));

  replace(container,
    h("div", { class: "page-head" }, h("div", {}, heading,
      h("p", { class: "subtitle" }, "Teams on this AeroGrid platform, their quotas and the Kafka topics their apps may read."))),
    h("div", { class: "split" },
      h("div", {},
        h("section", { class: "panel", "aria-labelledby": "tenants-heading" }, h("h2", { id: "tenants-heading" }, "All tenants"), listBody),
        h("section", { class: "panel", "aria-labelledby": "new-tenant-heading" }, h("h2", { id: "new-tenant-heading" }, "New tenant"), form, created)),
      detail));
  pageTitle(tenant ? `Tenant ${tenant}` : "Tenants", heading);

  let closed = false;
  let cleanupDetail = null;

  async function loadList() {
    try {
      const tenants = await api.tenants();
      if (closed) return;
      if (!tenants.length) {
        replace(listBody, h("div", { class: "empty" }, h("strong", {}, "No tenants yet"), "Create the first one below."));
        return;
      }
      replace(listBody, h("table", { class: "data" },
        h("caption", { class: "visually-hidden" }, "Tenants"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Tenant"), h("th", { scope: "col", class: "num" }, "Apps"), h("th", { scope: "col" }, "Created"))),
        h("tbody", {}, tenants.map((t) => h("tr", { class: t.name === tenant ? "selected" : null, "data-tenant": t.name },
          h("th", { scope: "row" }, h("a", { href: `#/operators/${encodeURIComponent(t.name)}`, "aria-current": t.name === tenant ? "page" : null }, t.name)),
          h("td", { class: "num" }, count(t.apps)),
          h("td", {}, time(t.created_at)))))));
    } catch (error) {
      replace(listBody, notice("error", "The tenants could not be loaded.", h("p", {}, error.friendly || String(error))));
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = nameInput.value.trim();
    const topics = topicsInput.value.split(/[,\s]+/).map((t) => t.trim()).filter(Boolean);
    if (!name) {
      replace(created, notice("error", "Give the tenant a name.", h("p", {}, "Lowercase letters, digits, - and _, like trading or risk-team.")));
      nameInput.focus();
      return;
    }
    try {
      const answer = await api.createTenant(name, topics.length ? topics : null);
      const secret = answer.admin_token.secret;
      const copy = h("button", { type: "button", class: "button" }, "Copy");
      copy.addEventListener("click", async () => toast((await copyText(secret)) ? "Copied." : "Copy it by hand: select the text."));
      replace(created, notice("ok", `Tenant ${answer.tenant.name} created.`,
        h("p", {}, "Its first admin token is below. Give it to the team's administrator now: it is shown only this once. They create the team's other tokens."),
        h("div", { class: "row" }, h("code", { class: "secret", id: "tenant-admin-secret" }, secret), copy)));
      nameInput.value = "";
      topicsInput.value = "";
      loadList();
    } catch (error) {
      replace(created, notice("error", "The tenant was not created.", h("p", {}, error.friendly || String(error))));
    }
  });

  loadList();
  if (tenant) cleanupDetail = renderTenant(detail, tenant, loadList);
  else replace(detail, h("section", { class: "panel" }, h("div", { class: "empty" }, h("strong", {}, "Choose a tenant"), "Its quota, topics and apps' quotas show here.")));
  return () => {
    closed = true;
    cleanupDetail?.();
  };
}

/** A size for an input: 4G, 512M or bytes. */
function sizeText(value) {
  if (value === null || value === undefined) return "";
  for (const [unit, scale] of [["T", 1024 ** 4], ["G", 1024 ** 3], ["M", 1024 ** 2], ["K", 1024]]) {
    if (value >= scale && value % scale === 0) return `${value / scale}${unit}`;
  }
  return String(value);
}

/** Inputs for quota values: only the ones changed are sent; an emptied one is null (the default). */
function quotaForm(id, specs, onSave) {
  const inputs = new Map();
  const fields = specs.map((spec) => {
    const input = h("input", { type: "text", inputmode: spec.kind === "bytes" ? "text" : "decimal", spellcheck: "false", "data-key": spec.key });
    inputs.set(spec.key, { input, spec, initial: "" });
    return field(`${id}-${spec.key}`, spec.label, input, spec.hint).field;
  });
  const result = h("div", { "aria-live": "polite", id: `${id}-result` });
  const save = h("button", { type: "submit", class: "button primary", id: `${id}-save` }, "Save");
  const form = h("form", { method: "post", action: "#", id }, h("div", { class: "form-grid" }, fields), h("div", { class: "button-row" }, save), result);
  function fill(values) {
    for (const [key, entry] of inputs) {
      const value = values[key];
      entry.initial = entry.spec.kind === "bytes" ? sizeText(value) : value === null || value === undefined ? "" : String(value);
      entry.input.value = entry.initial;
      entry.input.removeAttribute("aria-invalid");
    }
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    for (const [key, entry] of inputs) {
      const text = entry.input.value.trim();
      if (text === entry.initial) continue;
      if (text === "") {
        body[key] = null;
        continue;
      }
      const value = entry.spec.kind === "bytes" ? parseBytes(text) : Number(text);
      if (value === null || Number.isNaN(value) || (entry.spec.kind === "int" && !Number.isInteger(value))) {
        entry.input.setAttribute("aria-invalid", "true");
        replace(result, notice("error", `${entry.spec.label}: "${text}" is not a valid value.`,
          h("p", {}, entry.spec.kind === "bytes" ? "Use a size like 512M, 4G or a number of bytes." : entry.spec.kind === "int" ? "Use a whole number." : "Use a number, like 0.5 or 2.")));
        entry.input.focus();
        return;
      }
      entry.input.removeAttribute("aria-invalid");
      body[key] = value;
    }
    if (!Object.keys(body).length) {
      replace(result, notice("info", "Nothing changed.", h("p", {}, "Edit a value, then save.")));
      return;
    }
    save.disabled = true;
    try {
      const answer = await onSave(body);
      fill(answer);
      replace(result, notice("ok", "Saved. The new quota applies now.", h("p", {}, describe(specs, answer))));
    } catch (error) {
      replace(result, notice("error", "The quota was not changed.", h("p", {}, error.friendly || String(error))));
    } finally {
      save.disabled = false;
    }
  });
  return { form, fill, result };
}

function describe(specs, values) {
  return specs.map((spec) => `${spec.label}: ${spec.kind === "bytes" ? bytes(values[spec.key]) : spec.key === "cpus" ? cpus(values[spec.key]) : count(values[spec.key])}`).join(" · ");
}

const TENANT_SPECS = [
  { key: "max_apps", label: "Apps", kind: "int", hint: "Apps the team may have. Default 20." },
  { key: "memory_bytes", label: "Memory", kind: "bytes", hint: "Of its running apps together. Default 4G." },
  { key: "cpus", label: "CPUs", kind: "number", hint: "Of its running apps together. Default 2." },
  { key: "max_connections", label: "Live connections", kind: "int", hint: "Console and Excel connections at once. Default 200." },
];
const APP_SPECS = [
  { key: "memory_bytes", label: "Memory", kind: "bytes", hint: "At least 16M. Applies at once." },
  { key: "cpus", label: "CPUs", kind: "number", hint: "e.g. 0.5. Applies at once." },
  { key: "pids", label: "Processes", kind: "int", hint: "Applies at once." },
  { key: "grid_rows", label: "Grid rows", kind: "int", hint: "From the app's next start." },
];

function renderTenant(container, name, reloadList) {
  const heading = h("h2", { id: "tenant-heading" }, `Tenant ${name}`);
  const usage = h("p", { class: "small muted", id: "tenant-usage" });
  const quota = quotaForm("tenant-quota", TENANT_SPECS, (body) => api.setTenantQuota(name, body).then((answer) => { showUsage(answer); return answer; }));
  const aclInput = h("textarea", { rows: "4", spellcheck: "false", class: "code-small" });
  const aclField = field("tenant-acl", "Topic rules, one a line", aclInput, "A topic name, a prefix ending in * (market.*), or * for every topic. Apps get the change at their next start.");
  const aclResult = h("div", { "aria-live": "polite", id: "tenant-acl-result" });
  const aclForm = h("form", { method: "post", action: "#", id: "tenant-acl-form" }, aclField.field,
    h("button", { type: "submit", class: "button primary", id: "tenant-acl-save" }, "Save topics"), aclResult);
  const appInput = h("input", { type: "text", spellcheck: "false" });
  const appField = field("app-quota-name", "App", appInput, "The app's name, as its team sees it.");
  const appLoad = h("button", { type: "submit", class: "button", id: "app-quota-load" }, "Show its quota");
  const appLookup = h("form", { class: "inline-form", method: "post", action: "#" }, appField.field, h("div", { class: "field" }, appLoad));
  const appBody = h("div", { id: "app-quota" });
  const remove = h("button", { type: "button", class: "button danger-outline", id: "tenant-delete" }, `Delete tenant ${name}`);

  replace(container,
    h("section", { class: "panel", "aria-labelledby": "tenant-heading" }, heading, usage,
      h("h3", {}, "Quota"), quota.form),
    h("section", { class: "panel", "aria-labelledby": "acl-heading" }, h("h2", { id: "acl-heading" }, "Kafka topics"), aclForm),
    h("section", { class: "panel", "aria-labelledby": "app-quota-heading" }, h("h2", { id: "app-quota-heading" }, "An app's quota"), appLookup, appBody),
    h("section", { class: "panel", "aria-labelledby": "danger-heading" }, h("h2", { id: "danger-heading" }, "Delete"),
      h("p", { class: "small" }, "Deleting a tenant stops and removes all its apps and their data, and revokes its tokens. The audit log stays."), remove));

  function showUsage(answer) {
    const used = answer.used;
    usage.textContent = `In use: ${count(used.apps)} apps (${count(used.running_apps)} set to run), ${bytes(used.memory_bytes)} of memory and ${number(used.cpus)} CPUs for its running apps.`;
  }

  let closed = false;
  (async () => {
    try {
      const [q, topics] = await Promise.all([api.tenantQuota(name), api.acl(name)]);
      if (closed) return;
      quota.fill(q);
      showUsage(q);
      aclInput.value = topics.join("\n");
    } catch (error) {
      replace(container, h("section", { class: "panel" }, notice("error", error.code === "not_found" ? `There is no tenant ${name}.` : "The tenant could not be loaded.",
        h("p", {}, error.friendly || String(error)))));
    }
  })();

  aclForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const rules = aclInput.value.split(/[\n,]+/).map((r) => r.trim()).filter(Boolean);
    try {
      const topics = await api.setACL(name, rules);
      aclInput.value = topics.join("\n");
      replace(aclResult, notice("ok", "Saved.", h("p", {}, topics.length ? `Its apps may read: ${topics.join(", ")} (from each app's next start).` : "Its apps may read no topic (from each app's next start).")));
    } catch (error) {
      replace(aclResult, notice("error", "The topics were not changed.", h("p", {}, error.friendly || String(error))));
    }
  });

  appLookup.addEventListener("submit", async (event) => {
    event.preventDefault();
    const app = appInput.value.trim();
    if (!app) {
      replace(appBody, notice("error", "Enter the app's name.", h("p", {}, "Operators do not see a tenant's apps; ask the team for the name.")));
      appInput.focus();
      return;
    }
    try {
      const values = await api.appQuota(name, app);
      const form = quotaForm("app-quota-form", APP_SPECS, (body) => api.setAppQuota(name, app, body));
      form.fill(values);
      replace(appBody, h("h3", {}, `Quota of ${app}`), form.form);
    } catch (error) {
      replace(appBody, notice("error", error.code === "not_found" ? `Tenant ${name} has no app ${app}.` : "The app's quota could not be loaded.", h("p", {}, error.friendly || String(error))));
    }
  });

  remove.addEventListener("click", async () => {
    const sure = await confirmDialog({
      title: `Delete tenant ${name}?`,
      text: `All of ${name}'s apps stop and are removed with their grids and state, and every one of its tokens stops working. This cannot be undone.`,
      confirm: `Delete ${name}`,
    });
    if (!sure) return;
    try {
      await api.deleteTenant(name);
      toast(`Tenant ${name} was deleted.`);
      reloadList();
      location.hash = "#/operators";
    } catch (error) {
      toast(error.friendly || String(error), "error", 8);
    }
  });
  return () => { closed = true; };
}
