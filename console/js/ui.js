// Small DOM helpers. Everything is built with createElement and textContent: nothing the
// server or a user sends is ever parsed as HTML.

/** h("button", {class: "button", onclick: f}, "Start") */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      element.className = value;
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (name === "value" && "value" in element) {
      element.value = value;
    } else if (name === "checked" || name === "disabled" || name === "hidden" || name === "multiple" || name === "required") {
      element[name] = Boolean(value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

const SVG = "http://www.w3.org/2000/svg";
export function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(element) {
  while (element.firstChild) element.firstChild.remove();
  return element;
}

export function replace(element, ...children) {
  clear(element);
  append(element, children);
  return element;
}

/** A transient message in the polite live region (screen readers hear it too). */
export function toast(message, kind = "info", seconds = 5) {
  const region = document.getElementById("toasts");
  const item = h("div", { class: `toast ${kind}` }, message);
  region.append(item);
  setTimeout(() => item.remove(), seconds * 1000);
}

/** A notice block: kind is error, ok, warn or info. */
export function notice(kind, title, ...body) {
  return h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : null },
    title ? h("strong", {}, title) : null, ...body);
}

/** Asks with the page's modal dialog; resolves true when confirmed. */
export function confirmDialog({ title, text, confirm = "Confirm", danger = true }) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  const ok = document.getElementById("confirm-ok");
  ok.textContent = confirm;
  ok.className = danger ? "button danger" : "button primary";
  dialog.returnValue = "";
  const opener = document.activeElement;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok");
      if (opener && opener.isConnected) opener.focus();
    }, { once: true });
    dialog.showModal();
    document.getElementById("confirm-cancel").focus();
  });
}

/** A labelled field: returns {field, input}. */
export function field(id, labelText, input, hint) {
  input.id = id;
  const hintElement = hint ? h("span", { class: "hint", id: `${id}-hint` }, hint) : null;
  if (hintElement) input.setAttribute("aria-describedby", hintElement.id);
  return { field: h("div", { class: "field" }, h("label", { for: id }, labelText), input, hintElement), input };
}

/** Sets the page's title and moves focus to its heading (for screen readers and keyboards). */
export function pageTitle(text, heading) {
  document.title = `${text} · AeroGrid console`;
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    requestAnimationFrame(() => { if (heading.isConnected && !document.querySelector("dialog[open]")) heading.focus({ preventScroll: true }); });
  }
}

/** Copies text to the clipboard, with a fallback for plain-HTTP pages. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = h("textarea", { class: "visually-hidden", "aria-hidden": "true" });
    area.value = text;
    document.body.append(area);
    area.select();
    let done = false;
    try { done = document.execCommand("copy"); } catch { done = false; }
    area.remove();
    return done;
  }
}
