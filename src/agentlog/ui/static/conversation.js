// A model API call as a conversation (model, system prompt, messages, reply,
// tool calls, usage), and a session's calls as turns with their totals
// (docs/ui-api.md). Everything here is agent or model text: text nodes only,
// classes from fixed sets. Large payloads start collapsed and are built when opened.

import { api, isExchangeId } from "./api.js";
import { fill, h } from "./dom.js";
import { clock, plural } from "./format.js";

const LONG_TEXT = 1200; // characters: longer texts start collapsed, with a preview
const PREVIEW = 240;
const SHOWN_MESSAGES = 2; // the last messages sent are open; earlier ones are folded
const ROLES = new Set(["user", "assistant", "tool", "system"]);

function count(n) {
  return typeof n === "number" ? n.toLocaleString("en") : "–";
}

// A <details> whose content is built the first time it opens.
function folded(summary, build, { open = false, cls = "fold" } = {}) {
  const details = h("details", { class: cls }, h("summary", {}, summary));
  let built = false;
  const ensure = () => {
    if (built) return;
    built = true;
    details.append(build());
  };
  details.addEventListener("toggle", () => details.open && ensure());
  if (open) {
    ensure();
    details.open = true;
  }
  return details;
}

function preview(text) {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > PREVIEW ? `${flat.slice(0, PREVIEW)}…` : flat;
}

// Text as text; a long one folded behind its first words.
function longText(text, cls = "c-text") {
  if (text.length <= LONG_TEXT) return h("pre", { class: cls }, text);
  return folded(
    [h("span", { class: "c-preview" }, preview(text)), h("span", { class: "c-size" }, ` ${count(text.length)} characters`)],
    () => h("pre", { class: cls }, text),
  );
}

function jsonText(value) {
  try {
    return JSON.stringify(value, null, 2) ?? "null";
  } catch {
    return String(value);
  }
}

function toolCall(block) {
  const input = jsonText(block.input);
  const head = h(
    "div",
    { class: "c-tool-head" },
    h("span", { class: "c-label" }, "tool call"),
    h("span", { class: "c-tool-name" }, block.name ?? "?"),
    block.id ? h("span", { class: "c-id" }, block.id) : null,
    block.partial ? h("span", { class: "c-flag" }, "input cut short") : null,
  );
  const body =
    input.length <= LONG_TEXT
      ? h("pre", { class: "c-json" }, input)
      : folded([h("span", { class: "c-preview" }, preview(input)), h("span", { class: "c-size" }, ` ${count(input.length)} characters`)], () =>
          h("pre", { class: "c-json" }, input),
        );
  return h("div", { class: "c-block c-tool-call" }, head, body, block.partial && block.text ? h("pre", { class: "c-raw" }, block.text) : null);
}

function toolResult(block) {
  const label = [h("span", { class: "c-label" }, "tool result"), block.id ? h("span", { class: "c-id" }, block.id) : null];
  if (block.is_error) label.push(h("span", { class: "c-flag bad" }, "error"));
  label.push(h("span", { class: "c-preview" }, preview(block.text)));
  // Folded by default: tool results are most of a long conversation's bytes.
  return h("div", { class: "c-block c-tool-result" }, folded(label, () => h("pre", { class: "c-text" }, block.text)));
}

export function renderBlock(block) {
  switch (block.type) {
    case "text":
      return h("div", { class: "c-block c-text-block" }, longText(block.text));
    case "thinking":
      return h(
        "div",
        { class: "c-block c-thinking" },
        folded([h("span", { class: "c-label" }, "thinking"), h("span", { class: "c-size" }, ` ${count(block.text.length)} characters`)], () =>
          h("pre", { class: "c-text" }, block.text),
        ),
      );
    case "redacted_thinking":
      return h("div", { class: "c-block c-placeholder" }, "redacted thinking (encrypted by the API)");
    case "tool_use":
      return toolCall(block);
    case "tool_result":
      return toolResult(block);
    default:
      return h("div", { class: "c-block c-placeholder" }, block.text || `[${block.type}]`);
  }
}

function message(m) {
  const role = ROLES.has(m.role) ? m.role : "other";
  return h("div", { class: `c-message role-${role}` }, h("div", { class: "c-role" }, m.role), m.blocks.map(renderBlock));
}

export function usageLine(usage) {
  return [
    ["input", usage?.input_tokens],
    ["output", usage?.output_tokens],
    ["cache write", usage?.cache_creation_input_tokens],
    ["cache read", usage?.cache_read_input_tokens],
  ].map(([name, n]) => h("span", { class: "c-usage-item" }, h("span", { class: "c-label" }, name), ` ${count(n)}`));
}

function section(title, ...content) {
  return h("section", { class: "c-section" }, h("h4", {}, title), content);
}

// One exchange's conversation (GET /api/exchanges/{id}/conversation).
export function renderConversation(c) {
  const { request, reply } = c;
  const messages = request.messages;
  const earlier = messages.slice(0, Math.max(0, messages.length - SHOWN_MESSAGES));
  const last = messages.slice(earlier.length);
  const summary = h(
    "div",
    { class: "c-summary" },
    h("span", { class: "c-model" }, request.model ?? reply?.model ?? "model ?"),
    h("span", { class: "c-fact" }, c.api),
    h("span", { class: "c-fact" }, request.stream ? "streamed" : "not streamed"),
    reply ? h("span", { class: "c-fact c-stop" }, `stop: ${reply.stop_reason ?? "–"}`) : null,
    reply ? h("span", { class: "c-usage" }, usageLine(reply.usage)) : null,
  );
  return h(
    "div",
    { class: "conversation" },
    summary,
    c.notes.length ? h("ul", { class: "c-notes" }, c.notes.map((note) => h("li", {}, note))) : null,
    request.system.length
      ? folded([h("span", { class: "c-label" }, "system prompt"), h("span", { class: "c-preview" }, preview(request.system.join(" ")))], () =>
          h("div", {}, request.system.map((text) => h("pre", { class: "c-text" }, text))),
        )
      : null,
    request.tools.length
      ? folded([h("span", { class: "c-label" }, `tools offered (${request.tools.length})`), h("span", { class: "c-preview" }, preview(request.tools.join(", ")))], () =>
          h("ul", { class: "c-tools" }, request.tools.map((name) => h("li", {}, name))),
        )
      : null,
    section(
      `messages sent (${messages.length})${request.complete ? "" : ", cut short"}`,
      earlier.length ? folded(h("span", { class: "c-label" }, `${plural(earlier.length, "earlier message")}`), () => h("div", {}, earlier.map(message))) : null,
      last.map(message),
    ),
    reply ? renderReply(reply) : section("reply", h("div", { class: "c-placeholder" }, "no reply")),
  );
}

function renderReply(reply) {
  const state = reply.complete ? null : h("span", { class: "c-flag" }, "incomplete");
  return h(
    "section",
    { class: "c-section c-reply" },
    h("h4", {}, "reply", reply.model ? h("span", { class: "c-fact" }, reply.model) : null, state),
    reply.error ? h("div", { class: "c-error" }, reply.error) : null,
    reply.blocks.map(renderBlock),
    h("div", { class: "c-reply-foot" }, h("span", { class: "c-stop" }, `stop reason: ${reply.stop_reason ?? "–"}`), h("span", { class: "c-usage" }, usageLine(reply.usage))),
  );
}

// -- a session --------------------------------------------------------------------

function totals(t) {
  return h(
    "dl",
    { class: "facts c-totals" },
    [
      ["model calls", t.requests],
      ["input tokens", t.input_tokens],
      ["output tokens", t.output_tokens],
      ["cache write", t.cache_creation_input_tokens],
      ["cache read", t.cache_read_input_tokens],
      ["tool calls", t.tool_calls],
      ["failed or incomplete", t.errors],
    ].map(([label, n]) => [h("dt", {}, label), h("dd", { class: "num" }, count(n))]),
  );
}

function turnRow(turn, number, onOpen) {
  const open = isExchangeId(turn.id)
    ? h("a", { class: "action", href: `/?open=${encodeURIComponent(turn.id)}`, title: "show this call" }, "open")
    : null;
  open?.addEventListener("click", (event) => {
    event.preventDefault();
    onOpen(turn.id);
  });
  const calls = turn.tool_calls.map((call) => h("div", { class: "c-turn-call" }, h("span", { class: "c-tool-name" }, call.name), " ", h("span", { class: "c-preview" }, call.input)));
  const usage = turn.usage;
  const failed = turn.error !== null || !turn.complete;
  return h(
    "tr",
    { class: failed ? "row alarming" : "row" },
    h("td", { class: "num" }, String(number)),
    h("td", { class: "time", title: turn.timestamp }, clock(turn.timestamp)),
    h("td", {}, turn.model ?? "?"),
    h("td", { class: "c-cell" }, turn.prompt ? preview(turn.prompt) : turn.tool_results ? `(${plural(turn.tool_results, "tool result")})` : ""),
    h("td", { class: "c-cell" }, turn.error ? h("span", { class: "bad" }, turn.error) : preview(turn.reply), calls),
    h("td", {}, turn.stop_reason ?? (failed ? "incomplete" : "–")),
    h("td", { class: "num" }, count(usage.input_tokens)),
    h("td", { class: "num" }, count(usage.output_tokens)),
    h("td", { class: "num" }, count(usage.cache_creation_input_tokens)),
    h("td", { class: "num" }, count(usage.cache_read_input_tokens)),
    h("td", {}, open),
  );
}

// The session's turns (GET /api/sessions/{id}/conversation); without a session
// chosen, the most recent one.
export async function showSessionConversation(root, session, onOpen) {
  let chosen = session;
  if (!chosen) {
    const { items } = await api.sessions();
    if (!items.length) {
      fill(root, h("div", { class: "message" }, "No sessions yet."));
      return;
    }
    chosen = items[0].session;
  }
  const s = await api.sessionConversation(chosen);
  const rows = s.turns.map((turn, i) => turnRow(turn, i + 1, onOpen));
  fill(
    root,
    h("h2", {}, "Session ", h("span", { class: "mono" }, s.session), h("span", { class: "c-size" }, ` ${plural(s.exchanges, "exchange")}${session ? "" : " (the most recent session; choose another in the session menu)"}`)),
    totals(s.totals),
    h(
      "div",
      { class: "c-session-facts" },
      h("div", {}, h("span", { class: "c-label" }, "tools used "), s.tools.length ? s.tools.map((t) => h("span", { class: "c-tool-count" }, h("span", { class: "c-tool-name" }, t.name), ` ${t.calls}`)) : "none"),
      h("div", {}, h("span", { class: "c-label" }, "models "), s.models.length ? s.models.join(", ") : "none"),
    ),
    h(
      "table",
      { class: "grid c-turns" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["#", "time", "model", "prompt", "reply and tool calls", "stop", "input", "output", "cache write", "cache read", ""].map((text, i) =>
            h("th", { class: i === 0 || i >= 6 ? "num" : null }, text),
          ),
        ),
      ),
      h("tbody", {}, rows.length ? rows : h("tr", { class: "message" }, h("td", { colspan: 11 }, "No model API calls in this session."))),
    ),
  );
}
