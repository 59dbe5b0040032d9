// Arc Fabric web UI: the event stream, the router and the header. Importing it starts
// nothing: index.html calls start().

import { TOKEN, api, apiUrl, debounce, emit, releaseMedia, setText, state, toast } from "./core.js";
import { addPreview, appendLog, ensureLogs, refreshJob, upsertJob } from "./jobs.js";
import { mountGenerate } from "./view-generate.js";
import { mountGpus } from "./view-gpus.js";
import { mountHistory } from "./view-history.js";
import { mountSession } from "./view-session.js";

// The page's fixed elements, found by start().
let view = null;
let connEl = null;
let queueInfo = null;
let queueToggle = null;
let pausedBanner = null;
let authBanner = null;

// ------------------------------------------------------------------ routing

let unmount = null;

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  const page = parts[0] || "generate";
  if (unmount) {
    try {
      unmount();
    } catch (err) {
      console.error(err);
    }
    unmount = null;
  }
  releaseMedia(view); // the blob URLs of the view left behind
  for (const a of document.querySelectorAll(".nav a")) {
    const active = a.dataset.page === page || (page === "session" && a.dataset.page === "history");
    a.classList.toggle("active", active);
    if (active) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (page === "session" && parts[1]) {
    unmount = mountSession(view, decodeURIComponent(parts[1]));
    document.title = `Session ${parts[1]} · Arc Fabric`;
  } else if (page === "history") {
    unmount = mountHistory(view);
    document.title = "History · Arc Fabric";
  } else if (page === "gpus") {
    unmount = mountGpus(view);
    document.title = "Devices · Arc Fabric";
  } else {
    unmount = mountGenerate(view);
    document.title = "Arc Fabric";
  }
  window.scrollTo(0, 0);
}

// ------------------------------------------------------------------ header

function renderHeader() {
  let running = 0;
  let queued = 0;
  for (const j of state.jobs.values()) {
    if (j.state === "running") running += 1;
    else if (j.state === "queued") queued += 1;
  }
  setText(queueInfo, `${running} running · ${queued} queued`);
  setText(queueToggle, state.paused ? "Resume queue" : "Pause queue");
  queueToggle.setAttribute("aria-pressed", state.paused ? "true" : "false");
  queueToggle.classList.toggle("btn-warn", state.paused);
  pausedBanner.hidden = !state.paused;
}

function setConn(value, detail = "") {
  const changed = state.conn !== value;
  state.conn = value;
  connEl.dataset.state = value;
  setText(connEl.querySelector(".conn-text"), detail || { live: "live", connecting: "connecting", reconnecting: "reconnecting", unauthorized: "token refused" }[value] || value);
  if (changed) emit({ type: "conn", state: value });
}

async function toggleQueue() {
  queueToggle.disabled = true;
  try {
    const out = await api(state.paused ? "/api/queue/unpause" : "/api/queue/pause", { method: "POST" });
    state.paused = out.paused;
    renderHeader();
    emit({ type: "queue", paused: out.paused });
    for (const j of state.jobs.values()) if (j.state === "queued") refreshJob(j.id);
  } catch (err) {
    toast(err.message, "error");
  } finally {
    queueToggle.disabled = false;
  }
}

// ------------------------------------------------------------------ events

const refreshModels = debounce(async () => {
  try {
    state.models = await api("/api/models");
    emit({ type: "models" });
  } catch {
    // the next event tries again
  }
}, 120);

function onEvent(ev) {
  if (typeof ev.time === "number") state.clockOffset = ev.time * 1000 - Date.now();
  switch (ev.type) {
    case "snapshot": {
      const jobs = new Map();
      for (const j of ev.jobs || []) {
        const old = state.jobs.get(j.id);
        jobs.set(j.id, old ? Object.assign(old, j) : j);
        if (j.preview) addPreview(j.id, j.progress ? j.progress.step : null, j.preview);
      }
      state.jobs = jobs;
      state.models = ev.models || [];
      state.gpus = ev.gpus || [];
      state.gpusAt = Date.now();
      state.paused = Boolean(ev.paused);
      state.server = ev.server || null; // the executor, and what a cancel does with it
      // Recent cache activity from before this page connected, newest first as the events add them.
      if (Array.isArray(ev.model_events) && !state.modelEvents.length) state.modelEvents = ev.model_events.slice().reverse();
      setConn("live");
      authBanner.hidden = true;
      backoff = 500;
      for (const id of state.jobs.keys()) refreshJob(id);
      for (const el of document.querySelectorAll("[data-logs-job]")) ensureLogs(Number(el.dataset.logsJob), true);
      break;
    }
    case "job": {
      const old = state.jobs.get(ev.job.id);
      ev.prev = old ? old.state : null;
      upsertJob(ev.job);
      if (ev.prev !== ev.job.state) {
        for (const j of state.jobs.values()) if (j.state === "queued" && j.id !== ev.job.id) refreshJob(j.id);
        if (ev.job.state !== "queued") refreshModels();
      }
      break;
    }
    case "progress": {
      const job = state.jobs.get(ev.job_id);
      if (!job) return;
      const { session_id, step, total, elapsed, step_seconds, eta } = ev;
      job.progress = { session_id, step, total, elapsed, step_seconds, eta };
      if (!job.session_id) job.session_id = session_id;
      refreshJob(job.id);
      break;
    }
    case "preview":
      addPreview(ev.job_id, ev.step, ev.image);
      refreshJob(ev.job_id);
      break;
    case "log":
      appendLog(ev.job_id, ev.line);
      break;
    case "model":
      state.modelEvents.unshift(ev);
      if (state.modelEvents.length > 100) state.modelEvents.length = 100;
      refreshModels();
      break;
    case "gpus":
      state.gpus = ev.devices || [];
      state.gpusAt = Date.now();
      break;
    case "queue":
      state.paused = Boolean(ev.paused);
      for (const j of state.jobs.values()) if (j.state === "queued") refreshJob(j.id);
      break;
    default:
      break;
  }
  renderHeader();
  emit(ev);
}

let socket = null;
let backoff = 500;
let retryTimer = null;
let gotSnapshot = false;

function connect() {
  clearTimeout(retryTimer);
  const url = new URL(apiUrl("api/events"));
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (TOKEN) url.searchParams.set("token", TOKEN);
  setConn(gotSnapshot ? "reconnecting" : "connecting");
  let ws;
  try {
    ws = new WebSocket(url);
  } catch {
    scheduleReconnect();
    return;
  }
  socket = ws;
  ws.addEventListener("message", (m) => {
    let ev;
    try {
      ev = JSON.parse(m.data);
    } catch {
      return;
    }
    if (ev.type === "snapshot") gotSnapshot = true;
    try {
      onEvent(ev);
    } catch (err) {
      console.error(err);
    }
  });
  ws.addEventListener("close", (e) => {
    if (socket !== ws) return;
    socket = null;
    if (e.code === 4401) {
      setConn("unauthorized");
      authBanner.hidden = false;
    }
    scheduleReconnect();
  });
}

function scheduleReconnect() {
  const wait = Math.round(backoff * (0.8 + Math.random() * 0.4));
  backoff = Math.min(backoff * 2, 10000);
  if (state.conn !== "unauthorized") setConn("reconnecting", `reconnecting in ${Math.max(1, Math.round(wait / 1000))}s`);
  retryTimer = setTimeout(connect, wait);
}

/** If the event stream is slow to come (a proxy without WebSockets), fill the page from REST. */
async function restFallback() {
  if (gotSnapshot) return;
  try {
    const [models, gpus, jobs] = await Promise.all([api("/api/models"), api("/api/gpus"), api("/api/jobs")]);
    if (gotSnapshot) return;
    state.models = models;
    state.gpus = gpus;
    state.gpusAt = Date.now();
    for (const j of jobs) upsertJob(j);
    renderHeader();
    emit({ type: "snapshot", jobs, models, gpus, paused: state.paused });
  } catch (err) {
    toast(err.message, "error");
  }
}

let started = false;

/** Start the UI on this page: the header, the router, the event stream. Once. */
export function start() {
  if (started) return;
  started = true;
  view = document.getElementById("view");
  connEl = document.querySelector('[data-testid="conn-status"]');
  queueInfo = document.querySelector('[data-testid="queue-info"]');
  queueToggle = document.querySelector('[data-testid="queue-toggle"]');
  pausedBanner = document.querySelector('[data-testid="paused-banner"]');
  authBanner = document.querySelector('[data-testid="auth-banner"]');
  queueToggle.addEventListener("click", toggleQueue);
  window.addEventListener("hashchange", route);
  renderHeader();
  route();
  connect();
  setTimeout(restFallback, 3000);
}
