// smsgw operator console: plain JavaScript, no framework, no build step.
// The API key lives in this tab's sessionStorage and goes out only as
// `Authorization: Bearer`; live events come from /v1/events read with fetch() streaming
// (EventSource cannot send that header). Everything from the API is put in the page with
// textContent, never as HTML.
"use strict";

const KEY_STORE = "smsgw.console.key";
const FINAL = new Set(["delivered", "undelivered", "expired", "failed", "rejected",
  "canceled", "partially_delivered"]);
const MAX_ROWS = 50;

const $ = (id) => document.getElementById(id);
let key = null;
let scopes = new Set();
let stream = null;        // AbortController of the live event stream
let lastEventId = null;
let routesTimer = null;
let previewTimer = null;
const messageRows = new Map();  // message id -> <tr>

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.title)) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${key}` };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

function clock(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "";
}

function badge(state) {
  let cls = "badge";
  if (["delivered", "connected", "bound", "succeeded", "ok"].includes(state)) cls += " ok";
  else if (["failed", "undelivered", "rejected", "expired", "disconnected", "dead",
    "stale", "unknown", "error"].includes(state)) cls += " bad";
  else if (["partially_delivered", "throttled", "pending", "canceled"].includes(state)) cls += " warn";
  return el("span", { class: cls, "data-state": state, text: state });
}

function trim(tbody) {
  while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(-1);
}

// -- sign in ---------------------------------------------------------------------------

async function probe(method, path, body) {
  // 401: the key is refused; 403: it lacks the scope; anything else: allowed.
  try {
    await api(method, path, body);
    return "yes";
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    if (e.status === 401) return "refused";
    if (e.status === 403) return "no";
    return "yes";
  }
}

async function signIn(candidate) {
  key = candidate;
  // Each check only reads, or is refused before anything runs: a USSD request with an
  // empty body is a 422 for a key with the scope and a 403 for one without.
  const checks = {
    read: ["GET", "/v1/routes"],
    send: ["POST", "/v1/messages/preview", { text: "probe" }],
    modems: ["POST", "/v1/modems/_/ussd", {}],
    webhooks: ["GET", "/v1/webhooks"],
  };
  const names = Object.keys(checks);
  const answers = await Promise.all(names.map((n) => probe(...checks[n])));
  if (answers.includes("refused")) {
    key = null;
    throw new Error("Sign-in refused: the API does not accept this key.");
  }
  scopes = new Set(names.filter((n, i) => answers[i] === "yes"));
  if (scopes.size === 0) {
    key = null;
    throw new Error("Sign-in refused: this key may not read, send or manage anything here.");
  }
  sessionStorage.setItem(KEY_STORE, candidate);
  start();
}

function signOut() {
  sessionStorage.removeItem(KEY_STORE);
  key = null;
  if (stream) stream.abort();
  stream = null;
  clearInterval(routesTimer);
  lastEventId = null;
  messageRows.clear();
  routeRows.clear();
  inboundIds.clear();
  for (const id of ["routes-body", "messages-body", "inbound-body", "webhooks-list", "ussd-modem"]) {
    $(id).replaceChildren();
  }
  $("send-route").replaceChildren(el("option", { value: "", text: "automatic" }));
  for (const id of ["send-result", "ussd-result"]) $(id).textContent = "";
  $("app").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "";
  $("signin").hidden = false;
  setLive(false);
  $("key").value = "";
  $("key").focus();
}

function start() {
  $("signin").hidden = true;
  $("signin-error").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = false;
  $("who").textContent = `scopes: ${[...scopes].join(", ")}`;
  for (const section of document.querySelectorAll("[data-scope]")) {
    section.hidden = !scopes.has(section.dataset.scope);
  }
  if (scopes.has("read")) {
    loadRoutes();
    routesTimer = setInterval(loadRoutes, 5000);
    loadMessages();
    loadInbound();
    follow();
  }
  if (scopes.has("webhooks")) loadWebhooks();
}

// -- routes ----------------------------------------------------------------------------

const routeRows = new Map();

function routeCells(r) {
  const throttled = r.details && r.details.throttled;
  return [
    el("td", { text: r.route }),
    el("td", {}, badge(r.state || "unknown"), throttled ? " " : null,
      throttled ? badge("throttled") : null),
    el("td", { text: r.signal_dbm == null ? "–" : `${r.signal_dbm} dBm` }),
    el("td", { text: r.operator || "–" }),
    el("td", { text: r.queue_depth == null ? "–" : String(r.queue_depth) }),
    el("td", { text: r.in_flight == null ? "–" : String(r.in_flight) }),
    el("td", { class: "muted", text: ago(r.last_seen), title: r.last_seen || "" }),
  ];
}

function showRoute(r) {
  let tr = routeRows.get(r.route);
  if (!tr) {
    tr = el("tr", { "data-route": r.route });
    routeRows.set(r.route, tr);
    $("routes-body").append(tr);
  }
  tr.dataset.connected = String(Boolean(r.connected));
  tr.replaceChildren(...routeCells(r));
}

async function loadRoutes() {
  try {
    const data = await api("GET", "/v1/routes");
    const all = [...data.modems, ...data.binds];
    for (const r of all) showRoute(r);
    const select = $("send-route");
    if (select.options.length === 1) {
      const pools = [];
      if (data.modems.length) pools.push("modem:*");
      if (data.binds.length) pools.push("smpp:*");
      for (const name of [...pools, ...all.map((r) => r.route)]) {
        select.append(el("option", { value: name, text: name }));
      }
      $("ussd-modem").replaceChildren(...data.modems.map((m) => el("option", { value: m.id, text: m.route })));
    }
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) signOut();
  }
}

function routeEvent(d) {
  const tr = routeRows.get(d.route);
  if (!tr) return;
  showRoute({ ...d, last_seen: d.at });
}

// -- messages --------------------------------------------------------------------------

function messageRow(m) {
  let tr = messageRows.get(m.id);
  const fresh = !tr;
  if (!tr) {
    tr = el("tr", { "data-id": m.id });
    messageRows.set(m.id, tr);
  }
  const known = tr.dataset;
  if (m.text !== undefined) known.text = m.text;
  if (m.to) known.to = m.to;
  tr.dataset.status = m.status;
  tr.replaceChildren(
    el("td", { text: known.to || "" }),
    el("td", { class: "text", text: known.text || "" }),
    el("td", {}, badge(m.status)),
    el("td", { text: m.route || "" }),
    el("td", { class: "muted", text: clock(m.updated_at || m.occurred_at), title: m.id }),
  );
  if (fresh) tr.classList.add("fresh");
  return { tr, fresh };
}

function addMessage(m, prepend) {
  const { tr, fresh } = messageRow(m);
  if (fresh) {
    if (prepend) $("messages-body").prepend(tr);
    else $("messages-body").append(tr);
    trim($("messages-body"));
  }
}

async function loadMessages() {
  try {
    const data = await api("GET", "/v1/messages?limit=20");
    for (const m of data.data) addMessage(m, false);
  } catch (_) { /* shown empty */ }
}

function statusEvent(d, ts) {
  const tr = messageRows.get(d.message_id);
  // An event may arrive for a message the list has not shown yet: add it on top.
  addMessage({ id: d.message_id, to: d.to, status: d.status, route: d.route,
    occurred_at: d.occurred_at || ts }, true);
  if (tr) {
    tr.classList.remove("fresh");
    void tr.offsetWidth;  // restart the highlight
    tr.classList.add("fresh");
  }
}

// -- incoming --------------------------------------------------------------------------

const inboundIds = new Set();

function addInbound(m, prepend) {
  if (inboundIds.has(m.id)) return;
  inboundIds.add(m.id);
  const tr = el("tr", { "data-id": m.id },
    el("td", { text: m.from }),
    el("td", { class: "text", text: m.text + (m.complete === false ? " [incomplete]" : "") }),
    el("td", { text: m.route }),
    el("td", { class: "muted", text: clock(m.received_at || m.created_at) }));
  if (prepend) {
    tr.classList.add("fresh");
    $("inbound-body").prepend(tr);
  } else {
    $("inbound-body").append(tr);
  }
  trim($("inbound-body"));
}

async function loadInbound() {
  try {
    const data = await api("GET", "/v1/inbound?limit=20");
    for (const m of data.data) addInbound(m, false);
  } catch (_) { /* shown empty */ }
}

// -- live events -----------------------------------------------------------------------

function setLive(on) {
  const live = $("live");
  live.dataset.live = on ? "true" : "false";
  live.textContent = on ? "live" : "offline";
}

function dispatch(frame) {
  let ev;
  try { ev = JSON.parse(frame.data); } catch (_) { return; }
  const d = ev.data || {};
  if (ev.type === "message.status") statusEvent(d, ev.timestamp);
  else if (ev.type === "message.received") addInbound(d, true);
  else if (ev.type === "route.state") routeEvent(d);
}

async function follow() {
  const controller = new AbortController();
  stream = controller;
  while (stream === controller) {
    try {
      const headers = { Authorization: `Bearer ${key}`, Accept: "text/event-stream" };
      if (lastEventId) headers["Last-Event-ID"] = lastEventId;
      const r = await fetch("/v1/events", { headers, signal: controller.signal, cache: "no-store" });
      if (r.status === 401) { signOut(); return; }
      if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let frame = { data: "" };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let nl;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl).replace(/\r$/, "");
          buffer = buffer.slice(nl + 1);
          if (line === "") {
            if (frame.data) dispatch(frame);
            frame = { data: "" };
          } else if (line.startsWith("retry:")) {
            setLive(true);  // sent once the stream is live: nothing is missed from here
          } else if (line.startsWith("id:")) {
            lastEventId = line.slice(3).trim();
          } else if (line.startsWith("data:")) {
            frame.data += line.slice(5).trim();
          }
        }
      }
    } catch (e) {
      if (controller.signal.aborted) return;
    }
    setLive(false);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

// -- send ------------------------------------------------------------------------------

function counter() {
  clearTimeout(previewTimer);
  const text = $("send-text").value;
  const out = $("counter");
  if (!text) {
    out.textContent = "0 characters";
    out.classList.remove("multi");
    return;
  }
  previewTimer = setTimeout(async () => {
    try {
      const p = await api("POST", "/v1/messages/preview", { text });
      if ($("send-text").value !== text) return;
      const enc = p.encoding === "gsm7" ? "GSM-7" : "UCS-2";
      const unit = p.encoding === "gsm7" ? "septets" : "UCS-2 units";
      let line = `${enc} · ${p.units} ${unit} · ${p.parts} part${p.parts === 1 ? "" : "s"} · ${p.remaining} left in this part`;
      if (p.ucs2_chars && p.ucs2_chars.length) line += ` · UCS-2 because of ${p.ucs2_chars.slice(0, 5).join(" ")}`;
      out.textContent = line;
      out.dataset.parts = String(p.parts);
      out.dataset.encoding = p.encoding;
      out.classList.toggle("multi", p.parts > 1);
    } catch (e) {
      out.textContent = e.message;
    }
  }, 200);
}

async function send(event) {
  event.preventDefault();
  const form = event.target;
  const result = $("send-result");
  const to = $("send-to").value.split(/[\s,;]+/).filter(Boolean);
  const body = { to: to.length === 1 ? to[0] : to, text: $("send-text").value };
  if ($("send-from").value.trim()) body.from = $("send-from").value.trim();
  if ($("send-route").value) body.route = $("send-route").value;
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  result.className = "result";
  result.textContent = "Sending…";
  try {
    const r = await api("POST", "/v1/messages", body);
    const ok = r.messages.filter((m) => m.status !== "rejected");
    const bad = r.messages.filter((m) => m.status === "rejected");
    for (const m of ok) addMessage({ ...m, text: body.text, updated_at: new Date().toISOString() }, true);
    result.textContent = `Accepted ${ok.length}` +
      (bad.length ? `, rejected ${bad.map((m) => `${m.to} (${m.error_code})`).join(", ")}` : "");
    if (ok.length) $("send-text").value = "";
    counter();
  } catch (e) {
    result.className = "result error";
    result.textContent = `Not sent: ${e.message}`;
  } finally {
    button.disabled = false;
  }
}

// -- USSD / balance --------------------------------------------------------------------

async function modemCall(kind) {
  const modem = $("ussd-modem").value;
  const out = $("ussd-result");
  out.className = "result";
  out.textContent = kind === "balance" ? "Asking for the balance…" : "Running USSD…";
  try {
    const r = kind === "balance"
      ? await api("GET", `/v1/modems/${encodeURIComponent(modem)}/balance`)
      : await api("POST", `/v1/modems/${encodeURIComponent(modem)}/ussd`, { code: $("ussd-code").value });
    const amount = r.amount ? ` (${r.amount} ${r.currency || ""})` : "";
    out.textContent = r.ok ? `${modem}: ${r.text || ""}${amount}` : `${modem}: ${r.error || "failed"}`;
    if (!r.ok) out.className = "result error";
  } catch (e) {
    out.className = "result error";
    out.textContent = `${modem}: ${e.message}`;
  }
}

// -- webhooks --------------------------------------------------------------------------

function deliveryRow(hook, d) {
  const last = d.last_status_code ? `HTTP ${d.last_status_code}` : (d.last_error || "");
  const button = el("button", { class: "small", type: "button", text: "Redeliver" });
  const tr = el("tr", { "data-delivery": d.id },
    el("td", { text: d.event_type }),
    el("td", {}, badge(d.status)),
    el("td", { text: String(d.attempts) }),
    el("td", { class: "text", text: last.length > 70 ? `${last.slice(0, 70)}…` : last, title: last }),
    el("td", { class: "muted", text: ago(d.updated_at) }),
    el("td", {}, button));
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const fresh = await api("POST", `/v1/webhooks/${hook.id}/deliveries/${d.id}/redeliver`);
      tr.replaceWith(deliveryRow(hook, fresh));
    } catch (e) {
      button.disabled = false;
      button.textContent = `Failed: ${e.message}`;
    }
  });
  return tr;
}

async function loadWebhooks() {
  const list = $("webhooks-list");
  try {
    const hooks = (await api("GET", "/v1/webhooks")).data;
    if (!hooks.length) {
      list.replaceChildren(el("p", { class: "muted", text: "No webhooks." }));
      return;
    }
    const blocks = await Promise.all(hooks.map(async (hook) => {
      const deliveries = (await api("GET", `/v1/webhooks/${hook.id}/deliveries?limit=50`)).data;
      const failing = deliveries.filter((d) => d.status === "dead" || (d.status === "pending" && d.attempts > 0));
      const body = failing.length
        ? el("div", { class: "scroll" }, el("table", {},
            el("thead", {}, el("tr", {}, ...["Event", "Status", "Attempts", "Last", "Updated", ""].map((h) => el("th", { text: h })))),
            el("tbody", {}, ...failing.slice(0, 10).map((d) => deliveryRow(hook, d)))))
        : el("p", { class: "muted", text: "No recent failures." });
      return el("div", { class: "webhook", "data-webhook": hook.id },
        el("div", { class: "url", text: hook.url }),
        el("div", { class: "muted", text: `${hook.events.join(", ")}${hook.description ? " — " + hook.description : ""}` }),
        body);
    }));
    list.replaceChildren(...blocks, el("button", { class: "small", type: "button", text: "Refresh", onclick: loadWebhooks }));
  } catch (e) {
    list.replaceChildren(el("p", { class: "error", text: e.message }));
  }
}

// -- wiring ----------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = $("signin-error");
    const button = event.target.querySelector("button");
    button.disabled = true;
    error.hidden = true;
    try {
      await signIn($("key").value.trim());
      $("key").value = "";
    } catch (e) {
      error.textContent = e instanceof TypeError ? "Cannot reach the API." : e.message;
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
  $("signout").addEventListener("click", signOut);
  $("send-text").addEventListener("input", counter);
  $("send-form").addEventListener("submit", send);
  $("ussd-form").addEventListener("submit", (event) => { event.preventDefault(); modemCall("ussd"); });
  $("balance").addEventListener("click", () => modemCall("balance"));
  const saved = sessionStorage.getItem(KEY_STORE);
  if (saved) {
    signIn(saved).catch(() => { sessionStorage.removeItem(KEY_STORE); signOut(); });
  } else {
    $("key").focus();
  }
});
