// Shared state, the API client, the event fan-out and small DOM and formatting helpers.

export const TOKEN = new URLSearchParams(location.search).get("token") || null;

export const FINISHED = new Set(["succeeded", "failed", "cancelled", "interrupted"]);
export const ACTIVE = new Set(["queued", "running"]);

/** Everything the page knows; the WebSocket snapshot and events keep it current. */
export const state = {
  models: [],
  gpus: [],
  gpusAt: 0,
  jobs: new Map(), // id -> job view
  logs: new Map(), // job id -> [line]
  previews: new Map(), // job id -> [{step, image}]
  paused: false,
  conn: "connecting",
  clockOffset: 0, // server clock minus ours, in ms
  modelEvents: [], // newest first
  server: null, // {executor, cancel_grace, cancel_note}: what a cancel does here
};

// ------------------------------------------------------------------ events

const listeners = new Set();

/** Listen to every event (after the state is updated); returns the unsubscribe function. */
export function listen(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function emit(event) {
  for (const fn of [...listeners]) {
    try {
      fn(event);
    } catch (err) {
      console.error(err);
    }
  }
}

// ------------------------------------------------------------------ API

export class ApiError extends Error {
  constructor(field, message, status) {
    super(field ? `${field}: ${message}` : message);
    this.field = field;
    this.detail = message;
    this.status = status;
  }
}

/** A path of the server ("/api/models", "api/models") as a URL next to this page. */
export function apiUrl(path) {
  return new URL(String(path).replace(/^\/+/, ""), document.baseURI).toString();
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (TOKEN) headers.Authorization = `Bearer ${TOKEN}`;
  let response;
  try {
    response = await fetch(apiUrl(path), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(null, `the server cannot be reached (${err.message})`, 0);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = data && typeof data.message === "string" ? data.message : `${response.status} ${response.statusText}`;
    throw new ApiError(data && data.field ? data.field : null, message, response.status);
  }
  return data;
}

// The blob URL each media element plays (with a token only): revoked when the element is
// pointed elsewhere, and by releaseMedia when its view is left or it left the page.
const blobUrls = new Map(); // element -> blob URL

function revokeBlob(el) {
  const url = blobUrls.get(el);
  if (url === undefined) return;
  blobUrls.delete(el);
  if (el.getAttribute("src") === url) el.removeAttribute("src");
  URL.revokeObjectURL(url);
}

/** Revoke the blob URLs of the media elements under `root` and of every one no longer on
 * the page (the router calls it when a view is left). */
export function releaseMedia(root) {
  for (const el of [...blobUrls.keys()]) if (!el.isConnected || (root && root.contains(el))) revokeBlob(el);
}

/** How many blob URLs the page holds (the tests read it). */
export function liveBlobCount() {
  return blobUrls.size;
}

/** Point a <video> at a server file. With a token, the file is fetched with the
 * Authorization header (a media element cannot send one) and played from a blob. */
export async function setMediaSrc(el, path) {
  if (!path) {
    revokeBlob(el);
    el.removeAttribute("src");
    el.dataset.path = "";
    el.load?.();
    return;
  }
  if (el.dataset.path === path) return;
  el.dataset.path = path;
  revokeBlob(el);
  if (!TOKEN) {
    el.src = apiUrl(path);
    return;
  }
  let blob;
  try {
    const response = await fetch(apiUrl(path), { headers: { Authorization: `Bearer ${TOKEN}` } });
    if (!response.ok) return;
    blob = await response.blob();
  } catch {
    return;
  }
  // Pointed elsewhere meanwhile, or gone with its view: nothing to hold a blob for.
  if (el.dataset.path !== path || !el.isConnected) return;
  releaseMedia(null); // the blobs of elements gone since the last call
  const url = URL.createObjectURL(blob);
  blobUrls.set(el, url);
  el.src = url;
}

// ------------------------------------------------------------------ DOM

const PROPS = new Set(["value", "checked", "disabled", "selected", "hidden", "textContent", "innerHTML", "indeterminate"]);

/** Create an element: h("div", {class: "x", onclick: fn, "data-testid": "y"}, child, ...). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "muted") {
      el.muted = true;
      el.setAttribute("muted", "");
    } else if (PROPS.has(key)) el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function setText(el, text) {
  if (el && el.textContent !== text) el.textContent = text;
}

/** Call fn at most once per `ms` (trailing). */
export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

let toastRoot = null;

export function toast(message, kind = "info") {
  toastRoot ??= document.getElementById("toasts");
  if (!toastRoot) return;
  const el = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status", "data-testid": "toast" }, message);
  toastRoot.append(el);
  while (toastRoot.childElementCount > 3) toastRoot.firstElementChild.remove();
  setTimeout(() => el.classList.add("toast-out"), kind === "error" ? 6000 : 3500);
  setTimeout(() => el.remove(), kind === "error" ? 6400 : 3900);
}

// ------------------------------------------------------------------ formatting

export function serverNow() {
  return Date.now() + state.clockOffset;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, seconds);
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  const rest = Math.floor(s % 60);
  if (m < 60) return `${m}m ${String(rest).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

export function relTime(iso) {
  if (!iso) return "";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = (serverNow() - t) / 1000;
  if (s < 10) return "just now";
  if (s < 60) return `${Math.floor(s)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(t).toLocaleString();
}

export function fullTime(iso) {
  if (!iso) return "";
  const t = Date.parse(iso);
  return Number.isNaN(t) ? iso : new Date(t).toLocaleString();
}

/** The random part of a session id (20261127-044059-1d676c07 -> 1d676c07). */
export function shortId(id) {
  if (!id) return "";
  const parts = String(id).split("-");
  return parts[parts.length - 1];
}

export function humanize(name) {
  const words = String(name).replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export function truncate(text, n) {
  const s = String(text ?? "");
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

export function badge(text, kind, extra = {}) {
  return h("span", { class: `badge badge-${kind || text}`, ...extra }, text);
}
