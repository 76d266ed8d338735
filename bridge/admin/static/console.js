// event-bridge console: polls the admin API and renders with text nodes only.
// Every string shown may come from a vendor or a receiver: it never reaches innerHTML.
"use strict";

const POLL_MS = 2000;
const state = { token: sessionStorage.getItem("event-bridge-token") || "", csrf: null, actions: false };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child == null ? "" : String(child)));
  }
  return node;
}

function badge(text) {
  return el("span", { class: "badge " + String(text).replace(/[^a-z]/g, "") }, text);
}

function age(seconds) {
  if (seconds == null) return "-";
  seconds = Math.max(0, seconds);
  if (seconds < 120) return seconds.toFixed(0) + "s";
  if (seconds < 7200) return (seconds / 60).toFixed(0) + "m";
  return (seconds / 3600).toFixed(1) + "h";
}

function ms(value) { return value == null ? "-" : (value * 1000).toFixed(0) + " ms"; }
function when(ts) { return ts ? new Date(ts * 1000).toLocaleString() : "-"; }

async function api(path, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  const sent = state.token;
  if (sent) opts.headers["Authorization"] = "Bearer " + sent;
  const response = await fetch(path, opts);
  if (response.status === 401) {
    // Only a refusal of the token in use now (not of a request sent before logging in).
    if (sent === state.token) showLogin(sent ? "that token was refused" : "this bridge needs its [admin] token");
    throw new Error("unauthorized");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || ("HTTP " + response.status));
  return data;
}

function showLogin(note) {
  document.getElementById("login").hidden = false;
  document.getElementById("login-note").textContent = note || "";
}

function replaceRows(table, rows) {
  const body = document.querySelector(table + " tbody");
  body.replaceChildren(...rows);
}

function renderSummary(s) {
  const outbox = document.getElementById("outbox");
  outbox.replaceChildren(document.createTextNode("outbox " + (s.outbox.writable ? "writable" : "NOT writable: " + (s.outbox.problem || "")) + ", " + s.outbox.events + " events"));
  outbox.className = "badge " + (s.outbox.writable ? "writable" : "unwritable");
  const now = s.now;
  replaceRows("#sources", s.sources.map((src) => el("tr", { "data-name": src.name },
    el("td", {}, src.name), el("td", {}, src.vendor), el("td", { class: "state" }, badge(src.state)),
    el("td", {}, age(src.state_for)), el("td", { class: "reason" }, src.reason),
    el("td", {}, src.last_event_at ? age(now - src.last_event_at) + " ago" : "-"),
    el("td", { class: "reconnects" }, src.reconnects),
    el("td", {}, src.stats.events_read == null ? "-" : src.stats.events_read),
    el("td", { class: "parse-errors" }, src.stats.parse_errors == null ? "-" : src.stats.parse_errors),
    el("td", { class: "reason" }, src.target))));
  replaceRows("#sinks", s.sinks.map((sink) => el("tr", { "data-name": sink.name },
    el("td", {}, sink.name), el("td", { class: "state" }, badge(sink.state)),
    el("td", { class: "backlog" }, sink.backlog), el("td", {}, age(sink.backlog_age)),
    el("td", {}, sink.rate_per_s.toFixed(2)), el("td", {}, ms(sink.latency.p50)),
    el("td", {}, ms(sink.latency.p90)), el("td", {}, ms(sink.latency.p99)),
    el("td", {}, badge(sink.breaker)), el("td", { class: "dlq-count" }, sink.dead_letters),
    el("td", { class: "reason" }, sink.reason),
    el("td", { class: "action" }, sink.can_toggle
      ? el("span", {}, el("button", { type: "button", onclick: () => act("enable", { sink: sink.name }) }, "enable"), " ",
          el("button", { type: "button", onclick: () => act("disable", { sink: sink.name }) }, "disable"))
      : el("span", { class: "muted" }, "not supported")))));
  const select = document.getElementById("replay-sink");
  const names = s.sinks.map((k) => k.name);
  if (select.options.length !== names.length) {
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
  }
}

function renderDlq(rows) {
  document.getElementById("dlq-empty").hidden = rows.length > 0;
  replaceRows("#dlq", rows.map((r) => el("tr", { class: "clickable", "data-seq": r.seq, "data-sink": r.sink, onclick: () => showDetail(r.seq) },
    el("td", {}, r.sink), el("td", {}, r.id), el("td", {}, r.type), el("td", {}, r.subject || "-"),
    el("td", {}, r.last_status == null ? "-" : r.last_status), el("td", {}, r.attempts),
    el("td", { class: "excerpt" }, r.last_error),
    el("td", { class: "action" },
      el("button", { type: "button", class: "retry", onclick: (e) => { e.stopPropagation(); act("retry", { sink: r.sink, seqs: [r.seq] }); } }, "retry"), " ",
      el("button", { type: "button", class: "drop", onclick: (e) => { e.stopPropagation(); act("drop", { sink: r.sink, seqs: [r.seq] }); } }, "drop")))));
}

function renderEvents(rows) {
  replaceRows("#events", rows.map((r) => el("tr", { class: "clickable", "data-seq": r.seq, onclick: () => showDetail(r.seq) },
    el("td", {}, when(r.received_at)), el("td", {}, r.source), el("td", { class: "type" }, r.type),
    el("td", { class: "subject" }, r.subject || "-"), el("td", {}, r.id))));
}

async function showDetail(seq) {
  try {
    const d = await api("/api/event?seq=" + encodeURIComponent(seq));
    document.getElementById("detail").hidden = false;
    document.getElementById("detail-body").textContent = JSON.stringify(d.event, null, 2);
    replaceRows("#detail-deliveries", d.deliveries.map((x) => el("tr", {},
      el("td", {}, x.sink), el("td", {}, badge(x.state)), el("td", {}, x.attempts),
      el("td", {}, x.status == null ? "-" : x.status), el("td", { class: "excerpt" }, x.excerpt))));
  } catch (err) { showError(err); }
}

async function act(action, body) {
  const result = document.getElementById("action-result");
  try {
    const done = await api("/api/actions/" + action, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": state.csrf || "" },
      body: JSON.stringify(body),
    });
    result.textContent = action + " " + done.sink + ": " + done.count + " event(s)";
    refresh();
  } catch (err) { result.textContent = action + " failed: " + err.message; }
}

function showError(err) {
  const box = document.getElementById("error");
  if (err && err.message !== "unauthorized") { box.hidden = false; box.textContent = "console: " + err.message; }
}

async function session() {
  const s = await api("/api/session");
  state.csrf = s.csrf;
  state.actions = s.actions && !!state.token;
  document.body.classList.toggle("actions", state.actions);
  document.getElementById("mode").textContent = s.actions
    ? (state.token ? "actions enabled" : "enter the admin token to enable actions")
    : "read-only (set [admin] token to enable actions)";
  if (s.actions && !state.token) showLogin("");
  else document.getElementById("login").hidden = true;
}

async function refresh() {
  const type = document.getElementById("filter-type").value.trim();
  const subject = document.getElementById("filter-subject").value.trim();
  const query = "?type=" + encodeURIComponent(type || "*") + "&subject=" + encodeURIComponent(subject || "*");
  try {
    const [summary, dlq, events] = await Promise.all([api("/api/summary"), api("/api/dlq"), api("/api/events" + query)]);
    renderSummary(summary);
    renderDlq(dlq.dead_letters);
    renderEvents(events.events);
    document.getElementById("error").hidden = true;
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (err) { showError(err); }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    state.token = document.getElementById("token").value.trim();
    sessionStorage.setItem("event-bridge-token", state.token);
    document.getElementById("login").hidden = true;
    try { await session(); refresh(); } catch (err) { showError(err); }
  });
  document.getElementById("filters").addEventListener("input", () => refresh());
  document.getElementById("filters").addEventListener("submit", (e) => e.preventDefault());
  document.getElementById("detail-close").addEventListener("click", () => { document.getElementById("detail").hidden = true; });
  document.getElementById("replay").addEventListener("submit", (e) => {
    e.preventDefault();
    const since = document.getElementById("replay-since").value;
    const until = document.getElementById("replay-until").value;
    const iso = (v) => (v ? new Date(v).toISOString() : null);  // the browser's local time, sent as UTC
    act("replay", { sink: document.getElementById("replay-sink").value, since: iso(since), until: iso(until) });
  });
  session().then(refresh).catch(showError);
  setInterval(refresh, POLL_MS);
});
