// The tenant's tokens, for its admins: create (the secret shown once), list, revoke.
import { api } from "./api.js";
import { h, replace, notice, pageTitle, field, toast, confirmDialog, copyText } from "./ui.js";
import { time } from "./format.js";

const ROLES = [
  ["viewer", "Viewer: sees apps, logs and grids"],
  ["developer", "Developer: also deploys, starts and stops apps"],
  ["admin", "Admin: also manages tokens"],
];

export function renderTokens(container, _params, context) {
  const { session } = context;
  const heading = h("h1", {}, "Tokens");
  const listBody = h("div", { id: "tokens-list" }, h("p", { class: "muted" }, "Loading the tokens…"));
  const created = h("div", { id: "token-created", "aria-live": "polite" });
  const nameInput = h("input", { type: "text", maxlength: "64", required: true, "aria-required": "true" });
  const roleSelect = h("select", {}, ROLES.map(([value, text]) => h("option", { value }, text)));
  const nameField = field("token-name", "Name", nameInput, "Who or what uses it, e.g. \"finance-excel\".");
  const roleField = field("token-role", "Role", roleSelect);
  const form = h("form", { class: "inline-form", method: "post", action: "#" }, nameField.field, roleField.field,
    h("div", { class: "field" }, h("button", { type: "submit", class: "button primary", id: "token-create" }, "Create token")));

  replace(container,
    h("div", { class: "page-head" }, h("div", {}, heading,
      h("p", { class: "subtitle" }, `Access tokens of team ${session.tenant}. A token is shown once, when it is created; AeroGrid keeps only a fingerprint of it.`))),
    h("section", { class: "panel", "aria-labelledby": "new-token-heading" }, h("h2", { id: "new-token-heading" }, "New token"), form, created),
    h("section", { class: "panel", "aria-labelledby": "tokens-heading" }, h("h2", { id: "tokens-heading" }, "Your team's tokens"), listBody));
  pageTitle("Tokens", heading);

  let closed = false;
  async function load() {
    try {
      const tokens = await api.tokens();
      if (!closed) renderList(tokens);
    } catch (error) {
      replace(listBody, notice("error", "The tokens could not be loaded.", h("p", {}, error.friendly || String(error))));
    }
  }

  function renderList(tokens) {
    const live = tokens.filter((t) => !t.revoked_at);
    const revoked = tokens.filter((t) => t.revoked_at);
    if (!tokens.length) {
      replace(listBody, h("div", { class: "empty" }, h("strong", {}, "No tokens"), "Create one above."));
      return;
    }
    const row = (token) => {
      const cells = [
        h("th", { scope: "row" }, token.name),
        h("td", {}, token.role),
        h("td", {}, h("code", {}, token.id)),
        h("td", {}, time(token.created_at)),
        h("td", {}, token.last_used_at ? time(token.last_used_at) : "never"),
      ];
      if (token.revoked_at) {
        cells.push(h("td", {}, `revoked ${time(token.revoked_at)}`));
      } else {
        const revoke = h("button", { type: "button", class: "button danger-outline", "data-token": token.id }, "Revoke");
        revoke.setAttribute("aria-label", `Revoke ${token.name}`);
        revoke.addEventListener("click", async () => {
          const sure = await confirmDialog({
            title: `Revoke ${token.name}?`,
            text: "Whoever uses this token (a person, an Excel workbook, a script) loses access at once. This cannot be undone.",
            confirm: "Revoke token",
          });
          if (!sure) return;
          try {
            await api.revokeToken(token.id);
            toast(`${token.name} was revoked.`);
            load();
          } catch (error) {
            toast(error.friendly || String(error), "error", 8);
          }
        });
        cells.push(h("td", {}, revoke));
      }
      return h("tr", { "data-token-row": token.id, class: token.revoked_at ? "revoked" : null }, cells);
    };
    replace(listBody, h("table", { class: "data" },
      h("caption", { class: "visually-hidden" }, "Tokens"),
      h("thead", {}, h("tr", {}, ["Name", "Role", "Id", "Created", "Last used", "Status"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, [...live, ...revoked].map(row))));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = nameInput.value.trim();
    if (!name) {
      replace(created, notice("error", "Give the token a name.", h("p", {}, "A name says who or what uses it, so that it can be revoked later.")));
      nameInput.setAttribute("aria-invalid", "true");
      nameInput.focus();
      return;
    }
    nameInput.removeAttribute("aria-invalid");
    try {
      const token = await api.createToken(name, roleSelect.value);
      const copy = h("button", { type: "button", class: "button" }, "Copy");
      copy.addEventListener("click", async () => toast((await copyText(token.secret)) ? "Copied." : "Copy it by hand: select the text."));
      replace(created, notice("ok", `Token ${token.name} (${token.role}) created.`,
        h("p", {}, "Copy it now: it is shown only this once. Anyone who has it can act as your team with its role."),
        h("div", { class: "row" }, h("code", { class: "secret", id: "token-secret" }, token.secret), copy)));
      nameInput.value = "";
      load();
    } catch (error) {
      replace(created, notice("error", "The token was not created.", h("p", {}, error.friendly || String(error))));
    }
  });

  load();
  return () => { closed = true; };
}
