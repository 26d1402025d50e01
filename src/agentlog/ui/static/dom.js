// Building DOM without ever parsing markup: every string becomes a text node.
// The journal is written by a hostile agent, so nothing here knows innerHTML.

// Attributes that can carry agent text safely (none of them is a URL or a handler).
const TEXT_ATTRIBUTES = new Set([
  "class", "title", "tabindex", "colspan", "role", "type", "name", "placeholder",
  "aria-expanded", "aria-label", "aria-selected", "aria-live", "data-id", "data-view",
  "data-kind", "spellcheck", "autocomplete",
]);

// Links only ever point at our own API or page, built from ids (see api.js).
function isOwnUrl(url) {
  return typeof url === "string" && (url.startsWith("/api/") || url.startsWith("/?") || url === "/");
}

// h("td", {class: "path", title: path}, path, h("span", ...)): an element whose
// string children are text nodes; null/undefined/false children are skipped.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "href") {
      if (!isOwnUrl(value)) throw new Error("refusing a link that is not ours");
      el.setAttribute("href", value);
    } else if (name === "download") {
      el.setAttribute("download", value === true ? "" : String(value));
    } else if (name === "hidden") {
      el.hidden = true;
    } else if (TEXT_ATTRIBUTES.has(name)) {
      el.setAttribute(name, String(value));
    } else {
      throw new Error(`attribute ${name} is not on the safe list`);
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

// Replace an element's content with `children` (same rules as h()).
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}
