// The staff order board: sign in, list the newest orders, then follow the live order stream.
// Tokens live in memory only; every piece of data reaches the page through textContent.
"use strict";

const API = "/api/v1";
const PAGE_SIZE = 50;
const HEARTBEAT_SECONDS = 25;
const SILENCE_LIMIT_MS = 2.5 * HEARTBEAT_SECONDS * 1000;
const FIRST_RETRY_MS = 1000;
const LAST_RETRY_MS = 30000;
const STABLE_SOCKET_MS = 10000;
const UNREACHABLE_REFRESH_RETRY_MS = 5000;
const STAFF_ROLES = new Set(["staff", "admin"]);
const STAFF_ONLY = "The order board is for staff. This account is a customer account.";
const SESSION_ENDED = "Your session has ended; sign in again.";
const NO_ANSWER = "the service did not answer";
const CONNECTION_LABELS = {
  "connecting": "connecting",
  "live": "live",
  "reconnecting": "reconnecting…",
  "signed-out": "signed out",
};

const element = (id) => document.getElementById(id);

// `generation` changes at each sign-out: work started before it must not touch the page after.
const session = { access: null, refresh: null, generation: 0, refreshTimer: 0, refreshing: null };
const live = {
  socket: null, socketToken: null, openedAt: 0, framesSeen: 0, attempt: 0, retryTimer: 0,
  silenceTimer: 0,
};
const rows = new Map(); // order id -> {order, tr, cells}, in table order
const unknownOrders = new Map(); // order id -> events that arrived while it was being fetched

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// ---- the session: tokens, requests, sign-in and sign-out ----

function keepTokens(pair) {
  session.access = pair.access_token;
  session.refresh = pair.refresh_token;
  clearTimeout(session.refreshTimer);
  const lead = Math.min(60, pair.expires_in / 5);
  session.refreshTimer = setTimeout(refreshAhead, (pair.expires_in - lead) * 1000);
}

async function refreshAhead() {
  const outcome = await refreshTokens();
  if (outcome === "rejected") signOut(SESSION_ENDED);
  if (outcome === "unreachable") {
    session.refreshTimer = setTimeout(refreshAhead, UNREACHABLE_REFRESH_RETRY_MS);
  }
}

// A refresh token works once and a reuse ends the login, so every caller shares one request.
function refreshTokens() {
  if (!session.refreshing) {
    session.refreshing = requestRefresh().finally(() => { session.refreshing = null; });
  }
  return session.refreshing;
}

async function requestRefresh() {
  const { refresh, generation } = session;
  if (!refresh) return "rejected";
  let response;
  try {
    response = await fetch(`${API}/auth/refresh`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: refresh }),
    });
  } catch {
    return "unreachable";
  }
  if (generation !== session.generation) return "stale";
  if (response.ok) {
    keepTokens(await response.json());
    return "ok";
  }
  return response.status === 401 ? "rejected" : "unreachable";
}

function withToken(init) {
  return { ...init, headers: { ...init.headers, Authorization: `Bearer ${session.access}` } };
}

async function api(path, init = {}) {
  let response = await fetch(path, withToken(init));
  if (response.status === 401 && (await refreshTokens()) === "ok") {
    response = await fetch(path, withToken(init));
  }
  if (!response.ok) throw new ApiError(response.status, await problemDetail(response));
  return response.json();
}

async function problemDetail(response) {
  try {
    const problem = await response.json();
    if (typeof problem.detail === "string") return problem.detail;
  } catch {
    // not a problem body: fall through to the status line
  }
  return `HTTP ${response.status}`;
}

function reportFailure(error, what) {
  if (error instanceof ApiError && error.status === 401) {
    signOut(SESSION_ENDED);
    return;
  }
  const detail = error instanceof ApiError ? error.message : NO_ANSWER;
  showNotice(`${what}: ${detail}`);
}

async function signIn(event) {
  event.preventDefault();
  const button = element("sign-in");
  button.disabled = true;
  showNotice(null);
  try {
    const form = new URLSearchParams(new FormData(element("login-form")));
    const response = await fetch(`${API}/auth/token`, { method: "POST", body: form });
    if (!response.ok) {
      showNotice(await problemDetail(response));
      return;
    }
    keepTokens(await response.json());
    const me = await api(`${API}/users/me`);
    if (!STAFF_ROLES.has(me.role)) {
      signOut(STAFF_ONLY);
      return;
    }
    element("password").value = "";
    showBoard(me.email);
    await loadOrders();
    connect();
  } catch (error) {
    const message = error instanceof ApiError ? error.message : `Cannot sign in: ${NO_ANSWER}`;
    // Tokens but no board yet: drop them rather than keep a half sign-in refreshing itself.
    if (element("board").hidden) signOut(message);
    else showNotice(message);
  } finally {
    button.disabled = false;
  }
}

function signOut(message) {
  const refresh = session.refresh;
  session.generation += 1;
  session.access = null;
  session.refresh = null;
  clearTimeout(session.refreshTimer);
  stopLive();
  rows.clear();
  unknownOrders.clear();
  element("orders").replaceChildren();
  element("board").hidden = true;
  element("login").hidden = false;
  element("signed-in-as").hidden = true;
  element("sign-out").hidden = true;
  setConnection("signed-out");
  showNotice(message);
  if (refresh) {
    const body = JSON.stringify({ refresh_token: refresh });
    const headers = { "Content-Type": "application/json" };
    fetch(`${API}/auth/logout`, { method: "POST", headers, body }).catch(() => {});
  }
}

// ---- the live stream: connect, watch for silence, reconnect with backoff ----

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const token = session.access;
  const url = `${scheme}//${location.host}${API}/orders/ws?token=${encodeURIComponent(token)}`;
  const socket = new WebSocket(url);
  Object.assign(live, { socket, socketToken: token, openedAt: 0, framesSeen: 0 });
  socket.addEventListener("open", () => socketOpened(socket));
  socket.addEventListener("message", (message) => frameReceived(socket, message.data));
  socket.addEventListener("close", (closed) => socketClosed(socket, closed.code));
  socket.addEventListener("error", () => {
    if (socket === live.socket) setConnection("reconnecting");
  });
  watchSilence(socket);
}

function socketOpened(socket) {
  if (socket !== live.socket) return;
  live.openedAt = Date.now();
  setConnection("live");
  watchSilence(socket);
  loadOrders(); // re-read what changed while no socket was open (SPEC §5.10)
}

function frameReceived(socket, data) {
  if (socket !== live.socket) return;
  live.framesSeen += 1;
  element("connection").title = `Last heard from the service at ${new Date().toLocaleTimeString()}`;
  watchSilence(socket);
  let frame;
  try {
    frame = JSON.parse(data);
  } catch {
    return;
  }
  // A heartbeat only proves the socket alive, which watchSilence has just noted.
  if (frame.type !== "heartbeat" && frame.order_id) applyEvent(frame);
}

function socketClosed(socket, code) {
  if (socket !== live.socket) return;
  live.socket = null;
  clearTimeout(live.silenceTimer);
  // Refusals come right after the handshake: only a socket that carried frames or lasted counts.
  const lastedMs = live.openedAt ? Date.now() - live.openedAt : 0;
  if (live.framesSeen > 0 || lastedMs >= STABLE_SOCKET_MS) live.attempt = 0;
  if (code === 4403) {
    signOut(STAFF_ONLY);
    return;
  }
  setConnection("reconnecting");
  if (code === 4401) {
    renewThenReconnect();
  } else {
    scheduleReconnect();
  }
}

async function renewThenReconnect() {
  const generation = session.generation;
  // The token may have been renewed ahead of its expiry since this socket opened.
  const outcome = session.access !== live.socketToken ? "ok" : await refreshTokens();
  if (generation !== session.generation) return;
  if (outcome === "rejected") {
    signOut(SESSION_ENDED);
  } else {
    scheduleReconnect();
  }
}

function scheduleReconnect() {
  clearTimeout(live.retryTimer);
  const base = Math.min(LAST_RETRY_MS, FIRST_RETRY_MS * 2 ** live.attempt);
  live.attempt = Math.min(live.attempt + 1, 10);
  const jittered = base * (0.75 + Math.random() * 0.5); // spread reconnects after an outage
  live.retryTimer = setTimeout(connect, Math.min(LAST_RETRY_MS, jittered));
}

// A socket that hears nothing, not even a heartbeat, for 2.5 beats is dead without knowing it.
function watchSilence(socket) {
  clearTimeout(live.silenceTimer);
  live.silenceTimer = setTimeout(() => abandon(socket), SILENCE_LIMIT_MS);
}

function abandon(socket) {
  if (socket !== live.socket) return;
  live.socket = null;
  socket.close();
  setConnection("reconnecting");
  scheduleReconnect();
}

function stopLive() {
  clearTimeout(live.retryTimer);
  clearTimeout(live.silenceTimer);
  const socket = live.socket;
  live.socket = null;
  live.attempt = 0;
  if (socket) socket.close(1000);
}

// ---- orders: load, merge, apply events ----

// Microseconds since the epoch: two changes of one order may fall in the same millisecond.
function instant(iso) {
  const fraction = /\.(\d+)/.exec(iso);
  const micros = fraction ? Number(fraction[1].padEnd(6, "0").slice(0, 6)) : 0;
  return Date.parse(iso.replace(/\.\d+/, "")) * 1000 + micros;
}

async function loadOrders() {
  const generation = session.generation;
  try {
    const page = await api(`${API}/orders?page_size=${PAGE_SIZE}`);
    if (generation !== session.generation) return;
    mergePage(page.items);
    showNotice(null);
  } catch (error) {
    if (generation === session.generation) reportFailure(error, "Cannot load the orders");
  }
}

function mergePage(items) {
  const newestListed = items.length ? instant(items[0].created_at) : -Infinity;
  // Orders that arrived live after the page was read are newer than all of it: keep them on top.
  const arrivedSince = [...rows.values()]
    .filter((row) => instant(row.order.created_at) > newestListed)
    .sort((a, b) => instant(b.order.created_at) - instant(a.order.created_at));
  const merged = new Map(arrivedSince.map((row) => [row.order.id, row]));
  for (const order of items) {
    const known = rows.get(order.id);
    if (!known) {
      merged.set(order.id, newRow(order));
    } else {
      // An event newer than the page (the order moved while the page was read) wins.
      if (instant(order.updated_at) >= instant(known.order.updated_at)) {
        known.order = order;
        fillRow(known);
      }
      merged.set(order.id, known);
    }
  }
  rows.clear();
  merged.forEach((row, id) => rows.set(id, row));
  element("orders").replaceChildren(...[...merged.values()].map((row) => row.tr));
  showCount();
}

function applyEvent(event) {
  const waiting = unknownOrders.get(event.order_id);
  if (waiting) {
    waiting.push(event);
    return;
  }
  const row = rows.get(event.order_id);
  if (!row) {
    fetchUnknownOrder(event);
    return;
  }
  // Events of one order may be delivered out of order: `at` says which change is newer.
  const at = instant(event.at);
  const current = instant(row.order.updated_at);
  if (at < current || (at === current && row.order.status === event.status)) return;
  row.order.status = event.status;
  row.order.updated_at = event.at;
  fillRow(row);
  flash(row.tr);
}

async function fetchUnknownOrder(event) {
  const generation = session.generation;
  unknownOrders.set(event.order_id, []);
  try {
    const order = await api(`${API}/orders/${encodeURIComponent(event.order_id)}`);
    if (generation !== session.generation) return;
    const known = rows.get(order.id);
    if (known) {
      known.order = order;
      fillRow(known);
    } else {
      const row = newRow(order);
      rows.set(order.id, row);
      element("orders").prepend(row.tr);
      showCount();
    }
    flash(rows.get(order.id).tr);
    const waiting = unknownOrders.get(order.id) ?? [];
    unknownOrders.delete(order.id);
    waiting.forEach(applyEvent);
  } catch (error) {
    if (generation !== session.generation) return;
    unknownOrders.delete(event.order_id);
    if (!(error instanceof ApiError && error.status === 404)) {
      reportFailure(error, "Cannot read a new order");
    }
  }
}

// ---- rendering ----

function newRow(order) {
  const tr = document.createElement("tr");
  const cells = {};
  for (const name of ["order", "customer", "items", "status", "total", "changed"]) {
    cells[name] = tr.insertCell();
    cells[name].className = name;
  }
  cells.badge = document.createElement("span");
  cells.status.append(cells.badge);
  tr.addEventListener("animationend", () => tr.classList.remove("flash"));
  const row = { order, tr, cells };
  fillRow(row);
  return row;
}

function fillRow({ order, tr, cells }) {
  tr.dataset.orderId = order.id;
  tr.dataset.status = order.status;
  cells.order.textContent = shortId(order.id);
  cells.order.title = order.id;
  cells.customer.textContent = shortId(order.customer_id);
  cells.customer.title = order.customer_id;
  cells.items.textContent = describeLines(order.lines);
  cells.badge.textContent = order.status;
  cells.badge.className = `badge status-${order.status.toLowerCase()}`;
  cells.total.textContent = money(order.total_cents, order.currency);
  cells.changed.textContent = clockTime(order.updated_at);
  cells.changed.title = new Date(order.updated_at).toString();
}

function flash(tr) {
  tr.classList.remove("flash");
  void tr.offsetWidth; // restart the animation when the same row changes again
  tr.classList.add("flash");
}

function shortId(id) {
  return id.slice(0, 8);
}

function describeLines(lines) {
  if (!lines || lines.length === 0) return "";
  const [first, ...rest] = lines;
  const more = rest.length ? ` +${rest.length} more` : "";
  return `${first.quantity} × ${first.product_name}${more}`;
}

const moneyFormats = new Map();

function money(cents, currency) {
  if (!moneyFormats.has(currency)) {
    moneyFormats.set(currency, new Intl.NumberFormat(undefined, { style: "currency", currency }));
  }
  const format = moneyFormats.get(currency);
  // Minor units: cents for EUR, none for JPY, thousandths for KWD.
  return format.format(cents / 10 ** format.resolvedOptions().maximumFractionDigits);
}

function clockTime(iso) {
  const when = new Date(iso);
  if (when.toDateString() === new Date().toDateString()) {
    return when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }
  return when.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

function showCount() {
  element("empty").hidden = rows.size > 0;
  element("order-count").textContent = `${rows.size} shown · changes appear as they happen`;
}

function setConnection(state) {
  const indicator = element("connection");
  indicator.dataset.state = state;
  indicator.textContent = CONNECTION_LABELS[state];
}

function showNotice(message) {
  const notice = element("notice");
  notice.textContent = message ?? "";
  notice.hidden = !message;
}

function showBoard(email) {
  element("login").hidden = true;
  element("board").hidden = false;
  element("signed-in-as").textContent = email;
  element("signed-in-as").hidden = false;
  element("sign-out").hidden = false;
  element("empty").hidden = true;
  element("order-count").textContent = "";
  setConnection("connecting");
}

element("login-form").addEventListener("submit", signIn);
element("sign-out").addEventListener("click", () => signOut(null));
