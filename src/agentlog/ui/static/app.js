// The page: wires the filters (kept in the URL), the list, the live feed,
// the views and the keyboard together.

import { api, isExchangeId, isSessionId, links } from "./api.js";
import { $, fill, h } from "./dom.js";
import { plural } from "./format.js";
import { LiveFeed } from "./live.js";
import { RequestList } from "./list.js";
import { FILTERS, VIEWS, readState, sameFilters, writeState } from "./query.js";
import { showSessionConversation } from "./conversation.js";
import { showCaptures, showDomains } from "./views.js";

const TYPING_PAUSE_MS = 250;

const state = readState(location.search);
const form = $("#filters");
const inputs = Object.fromEntries(FILTERS.map((name) => [name, form.elements.namedItem(name)]).filter(([, el]) => el));
const liveLabel = $("#live");

const list = new RequestList($("#rows"), $("#more"), {
  onChange: () => {
    showCount();
    const open = list.openId;
    if (open !== state.open) {
      state.open = open;
      saveUrl();
    }
  },
  onError: (error) => showProblem(error),
});

const live = new LiveFeed({
  onRow: (row) => list.upsert(row),
  onReset: () => reload(),
  onState: (name) => {
    liveLabel.textContent = name === "live" ? "live" : "polling every 5 s";
    liveLabel.className = `live ${name === "live" ? "on" : "off"}`;
  },
});

function saveUrl(push = false) {
  const url = `/${writeState(state)}`;
  if (url !== `/${location.search}`) history[push ? "pushState" : "replaceState"](null, "", url);
}

function showCount() {
  const more = list.complete ? "" : " (scroll for older)";
  fill($("#count"), `${plural(list.count, "request")} shown${more}`);
  fill($("#more"), list.complete || !list.count ? "" : "loading older requests…");
}

function showProblem(error) {
  if (error.status === 401) {
    fill($("#count"), "Not signed in: open the URL that `agentlog ui` printed (it carries the token).");
  } else {
    fill($("#count"), `Problem: ${error.message}`);
  }
}

// -- filters -----------------------------------------------------------------

function showFilters() {
  for (const [name, el] of Object.entries(inputs)) {
    const value = state.filters[name] ?? "";
    if (el.tagName === "SELECT" && value && ![...el.options].some((o) => o.value === value)) {
      el.append(h("option", {}, value)); // a value from a bookmark that the menu lacks
      el.lastChild.value = value;
    }
    el.value = value;
  }
  const { since, until } = state.filters;
  const range = $("#time-range");
  range.hidden = !since && !until;
  fill(range, `time ${since ?? "…"} → ${until ?? "…"}  ×`);
  $("#har").setAttribute("href", links.har(state.filters));
  const packets = $("#session-packets");
  packets.hidden = !isSessionId(state.filters.session);
  if (!packets.hidden) packets.setAttribute("href", links.sessionPcap(state.filters.session));
}

function readFilters() {
  const filters = {};
  for (const name of FILTERS) {
    const el = inputs[name];
    const value = el ? el.value.trim() : state.filters[name];
    if (value) filters[name] = value;
  }
  return filters;
}

async function reload() {
  const { filters, open } = state; // loading the list forgets the open row: reopen it
  live.stop();
  if (await list.load(filters)) {
    live.start(filters, list.lastSeq);
    showIndexed(list.indexed);
    if (isExchangeId(open) && state.view === "requests") list.reveal(open);
  }
}

function filtersChanged() {
  const filters = readFilters();
  if (sameFilters(filters, state.filters)) return;
  state.filters = filters;
  state.open = null;
  saveUrl();
  showFilters();
  reload();
  if (state.view !== "requests") showView();
}

let typing = null;
form.addEventListener("input", (event) => {
  clearTimeout(typing);
  typing = setTimeout(filtersChanged, event.target.tagName === "SELECT" ? 0 : TYPING_PAUSE_MS);
});
form.addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(typing);
  filtersChanged();
});
$("#clear").addEventListener("click", () => {
  for (const el of Object.values(inputs)) el.value = "";
  delete state.filters.since;
  delete state.filters.until;
  filtersChanged();
});
$("#time-range").addEventListener("click", () => {
  const { since, until, ...rest } = state.filters;
  state.filters = rest;
  saveUrl();
  showFilters();
  reload();
});

// The sessions menu is filled when first approached: on a long journal the
// sessions query is the slowest there is, and most page loads never need it.
let sessionsLoaded = false;
async function loadSessions() {
  if (sessionsLoaded) return;
  sessionsLoaded = true;
  try {
    const { items } = await api.sessions();
    const select = inputs.session;
    for (const s of items) {
      if ([...select.options].some((o) => o.value === s.session)) continue;
      const option = h("option", {}, `${s.session.slice(0, 12)}…  ${s.first_seen?.slice(0, 19).replace("T", " ") ?? ""}  (${s.exchanges})`);
      option.value = s.session;
      option.title = s.session;
      select.append(option);
    }
    select.value = state.filters.session ?? "";
  } catch (error) {
    sessionsLoaded = false;
    showProblem(error);
  }
}
for (const approach of ["pointerenter", "focus"]) inputs.session.addEventListener(approach, loadSessions);

// -- views -------------------------------------------------------------------

function showView() {
  for (const button of document.querySelectorAll("nav.tabs .tab")) {
    button.setAttribute("aria-selected", String(button.getAttribute("data-view") === state.view));
  }
  for (const name of VIEWS) $(`#view-${name}`).hidden = name !== state.view;
  const root = $(`#view-${state.view}`);
  const loaded =
    state.view === "domains"
      ? showDomains(root, state.filters.session, (domain) => {
          inputs.domain.value = domain;
          state.view = "requests";
          saveUrl(true);
          showView();
          filtersChanged();
        })
      : state.view === "captures"
        ? showCaptures(root)
        : state.view === "conversations"
          ? showSessionConversation(root, state.filters.session, openExchange)
          : null;
  loaded?.catch((error) => fill(root, h("div", { class: "message" }, `Could not load: ${error.message}`)));
}

// A turn of the conversations view opens its exchange in the request list.
function openExchange(id) {
  state.view = "requests";
  state.open = id;
  saveUrl(true);
  showView();
  list.reveal(id);
}

for (const button of document.querySelectorAll("nav.tabs .tab")) {
  button.addEventListener("click", () => {
    state.view = button.getAttribute("data-view");
    saveUrl(true);
    showView();
  });
}

window.addEventListener("popstate", () => {
  const next = readState(location.search);
  const filtersMoved = !sameFilters(next.filters, state.filters);
  Object.assign(state, next);
  showFilters();
  showView();
  if (filtersMoved) reload();
});

// -- keyboard: j/k move, Enter expands, / searches, Esc closes ------------------

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  const typingInto = target.closest?.("input, select, textarea");
  if (typingInto) {
    if (event.key === "Escape") target.blur();
    return;
  }
  if (event.key === "/") {
    event.preventDefault();
    inputs.q.focus();
    inputs.q.select();
    return;
  }
  if (state.view !== "requests") return;
  // Keys meant for a link, button or JSON node inside an open row stay theirs.
  const ownWidget = target.closest?.("a, button, summary");
  if (event.key === "j") list.move(1);
  else if (event.key === "k") list.move(-1);
  else if (event.key === "Enter" && !ownWidget && list.selected) list.toggle(list.selected);
  else if (event.key === "Escape" && list.openId) list.toggle(list.openId);
  else return;
  event.preventDefault();
});

// -- start -------------------------------------------------------------------

function showIndexed(seq) {
  if (typeof seq === "number") fill($("#indexed"), `indexed to seq ${seq.toLocaleString("en")}`);
}

async function refreshIndexed() {
  try {
    showIndexed((await api.status()).indexed_seq);
  } catch {
    // the count line already says what is wrong
  }
}

showFilters();
showView();
reload();
setInterval(refreshIndexed, 10000);
