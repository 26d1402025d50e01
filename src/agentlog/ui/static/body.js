// A stored body, shown by kind: JSON as a collapsible tree, text as text,
// binary as its size and type. All of it is agent text: text nodes only.

import { h } from "./dom.js";
import { bytes, plural } from "./format.js";

// Objects and arrays deeper than this start collapsed; their children are
// built when first opened, so a large document costs little until explored.
const OPEN_DEPTH = 3;
const OPEN_MAX_ENTRIES = 100;

export function renderBody(body, downloadUrl) {
  if (!body) return h("div", { class: "body empty" }, "no body");
  const facts = [
    body.content_type || "no content-type",
    body.size !== null && body.size !== undefined ? bytes(body.size) : null,
    body.capped ? `stored the first ${bytes(body.stored_bytes)} (body cap)` : null,
  ].filter(Boolean);
  const head = h(
    "div",
    { class: "body-head" },
    h("span", { class: "facts" }, facts.join(" · ")),
    downloadUrl ? h("a", { class: "action", href: downloadUrl, download: true }, "download") : null,
  );
  const wrapper = h("div", { class: `body body-${kindClass(body.kind)}` }, head);
  if (body.kind === "binary" || body.text === null || body.text === undefined) {
    wrapper.append(h("div", { class: "binary" }, `binary, ${bytes(body.stored_bytes)} stored`));
    return wrapper;
  }
  const parsed = body.kind === "json" ? parseJson(body.text) : undefined;
  if (parsed === undefined) {
    wrapper.append(h("pre", { class: "text" }, body.text));
  } else {
    wrapper.append(jsonView(parsed, head));
  }
  if (body.truncated) {
    wrapper.append(h("div", { class: "note" }, "display cut short: download for the whole stored body"));
  }
  return wrapper;
}

function kindClass(kind) {
  return ["json", "text", "binary"].includes(kind) ? kind : "text";
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined; // cut at the display cap, or not JSON after all
  }
}

// The tree, with a tree/raw switch added to the body's head line.
function jsonView(value, head) {
  const tree = h("div", { class: "json-tree", role: "tree" }, jsonNode(null, value, 0));
  let raw = null;
  const toggle = h("button", { class: "action", type: "button" }, "raw");
  toggle.addEventListener("click", () => {
    raw ??= h("pre", { class: "text" }, JSON.stringify(value, null, 2));
    const showRaw = !raw.isConnected;
    if (showRaw) tree.replaceWith(raw);
    else raw.replaceWith(tree);
    toggle.textContent = showRaw ? "tree" : "raw";
  });
  head.insertBefore(toggle, head.querySelector("a"));
  return tree;
}

function keyLabel(key) {
  if (key === null) return null;
  return h("span", { class: "j-key" }, typeof key === "number" ? String(key) : JSON.stringify(key), ": ");
}

function jsonNode(key, value, depth) {
  if (value === null || typeof value !== "object") {
    return h("div", { class: "j-line" }, keyLabel(key), scalar(value));
  }
  const isArray = Array.isArray(value);
  const entries = isArray ? value.map((v, i) => [i, v]) : Object.entries(value);
  const [open, close] = isArray ? ["[", "]"] : ["{", "}"];
  if (entries.length === 0) {
    return h("div", { class: "j-line" }, keyLabel(key), h("span", { class: "j-punct" }, open + close));
  }
  const count = isArray ? plural(entries.length, "item") : plural(entries.length, "key");
  const details = h(
    "details",
    { class: "j-node" },
    h(
      "summary",
      {},
      keyLabel(key),
      h("span", { class: "j-punct" }, open),
      h("span", { class: "j-collapsed" }, h("span", { class: "j-count" }, count), h("span", { class: "j-punct" }, close)),
    ),
  );
  const children = h("div", { class: "j-children" });
  details.append(children, h("div", { class: "j-close j-punct" }, close));
  let built = false;
  const build = () => {
    if (built) return;
    built = true;
    for (const [k, v] of entries) children.append(jsonNode(k, v, depth + 1));
  };
  details.addEventListener("toggle", () => details.open && build());
  if (depth < OPEN_DEPTH && entries.length <= OPEN_MAX_ENTRIES) {
    build();
    details.open = true;
  }
  return details;
}

function scalar(value) {
  const type = value === null ? "null" : typeof value;
  const text = type === "string" ? JSON.stringify(value) : String(value);
  return h("span", { class: `j-${["string", "number", "boolean", "null"].includes(type) ? type : "other"}` }, text);
}
