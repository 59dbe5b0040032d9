// Jobs: the live card (timer, progress, preview frames, logs, result video) and the compact row.

import {
  ACTIVE,
  api,
  badge,
  clear,
  emit,
  fmtDuration,
  h,
  humanize,
  serverNow,
  setMediaSrc,
  setText,
  shortId,
  state,
  toast,
  truncate,
} from "./core.js";

const MAX_FRAMES = 48;

export function jobTitle(job) {
  const p = job.payload || {};
  switch (job.kind) {
    case "generate":
      return `Generate · ${p.model}${p.variant ? `/${p.variant}` : ""}`;
    case "fork":
      return `Fork of ${shortId(p.session)} at step ${p.step}`;
    case "edit":
      return `Edit of ${shortId(p.session)}${p.strength != null ? ` · strength ${p.strength}` : ` from step ${p.step}`}`;
    case "resume":
      return `Resume ${shortId(p.session)}${p.until != null ? ` until step ${p.until}` : ""}`;
    case "decode":
      return `Decode ${shortId(p.session)}${p.step != null ? ` at step ${p.step}` : ""}`;
    default: {
      // Any other operation (a plugin's too): its name, its session and its plain values.
      const values = Object.entries(p)
        .filter(([k, v]) => k !== "session" && k !== "prompt" && (typeof v === "number" || typeof v === "string" || typeof v === "boolean"))
        .slice(0, 2)
        .map(([k, v]) => `${k} ${truncate(String(v), 24)}`);
      return [`${humanize(job.kind)}${p.session ? ` of ${shortId(p.session)}` : ""}`, ...values].join(" · ");
    }
  }
}

export function jobPrompt(job) {
  const p = job.payload || {};
  return (p.params && p.params.prompt) || (p.overrides && p.overrides.prompt) || (typeof p.prompt === "string" ? p.prompt : "");
}

/** Place in the queue as the server orders it (priority, then age); null when not queued. */
export function queuePosition(job) {
  if (job.state !== "queued") return null;
  const queued = [...state.jobs.values()]
    .filter((j) => j.state === "queued")
    .sort((a, b) => b.priority - a.priority || a.id - b.id);
  const i = queued.findIndex((j) => j.id === job.id);
  return i < 0 ? job.position : i;
}

export function jobElapsed(job) {
  if (job.started_at) {
    const end = job.finished_at ? Date.parse(job.finished_at) : serverNow();
    return (end - Date.parse(job.started_at)) / 1000;
  }
  if (job.state === "queued") return (serverNow() - Date.parse(job.created_at)) / 1000;
  return null;
}

function timerText(job) {
  const elapsed = jobElapsed(job);
  if (elapsed === null) return "";
  return job.state === "queued" ? `waiting ${fmtDuration(elapsed)}` : fmtDuration(elapsed);
}

function tickTimers() {
  for (const el of document.querySelectorAll("[data-timer-job]")) {
    const job = state.jobs.get(Number(el.dataset.timerJob));
    if (job) setText(el, timerText(job));
  }
}

let timerHolders = 0;
let timerInterval = null;

/** Keep the job timers on the page running (a view showing job cards or rows calls it when
 * shown); returns the function that stops them, to call when the view is left. The clock
 * stops once no view holds it. */
export function startJobTimers() {
  timerHolders += 1;
  if (timerInterval === null) timerInterval = setInterval(tickTimers, 100);
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    timerHolders -= 1;
    if (timerHolders === 0) {
      clearInterval(timerInterval);
      timerInterval = null;
    }
  };
}

function progressInfo(job) {
  const p = job.progress;
  if (job.state === "queued") {
    const pos = queuePosition(job);
    const where = pos === 0 ? "next in line" : `position ${pos}`;
    return { text: `Queued · ${where}${state.paused ? " · queue paused" : ""}`, step: 0, total: 0 };
  }
  if (!p) {
    if (job.state === "running") return { text: "Starting… loading the model", step: 0, total: 0, busy: true };
    return { text: job.state === "succeeded" ? "Done" : humanState(job.state), step: 0, total: 0 };
  }
  const parts = [`Step ${p.step} / ${p.total}`];
  if (job.state === "running") {
    if (job.cancel_requested) parts.push("cancel requested: stopping at the next step");
    else if (p.step >= p.total) parts.push("writing the video…");
    else {
      if (p.step_seconds) parts.push(`${p.step_seconds.toFixed(2)} s/step`);
      if (p.eta !== null && p.eta !== undefined) parts.push(`ETA ${fmtDuration(p.eta)}`);
    }
  } else if (job.state === "succeeded") {
    parts.push(`done in ${fmtDuration(p.elapsed)} of denoising`);
  } else {
    parts.push(humanState(job.state));
  }
  return { text: parts.join(" · "), step: p.step, total: p.total, busy: job.state === "running" && p.step >= p.total };
}

function humanState(s) {
  return { failed: "Failed", cancelled: "Cancelled", interrupted: "Interrupted", running: "Running", queued: "Queued" }[s] || s;
}

function progressBar(testid) {
  return h(
    "div",
    { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "0", "aria-valuenow": "0", "data-testid": testid },
    h("div", { class: "progress-fill" }),
  );
}

function updateBar(bar, info, jobState) {
  const total = info.total || 0;
  const step = info.step || 0;
  const frac = total ? step / total : jobState === "succeeded" ? 1 : 0;
  if (bar.getAttribute("aria-valuemax") !== String(total)) bar.setAttribute("aria-valuemax", String(total));
  if (bar.getAttribute("aria-valuenow") !== String(step)) bar.setAttribute("aria-valuenow", String(step));
  bar.dataset.state = jobState;
  bar.classList.toggle("progress-busy", Boolean(info.busy));
  bar.firstChild.style.width = `${(frac * 100).toFixed(1)}%`;
}

/** What cancelling a running job does on this server (its executor decides). */
export function cancelNote() {
  const server = state.server || {};
  if (server.cancel_note) return `The job ${server.cancel_note}.`;
  return "The job stops at its next step.";
}

/** A job's cancel button: shown while it can be cancelled, "Stopping…" once asked. Returns
 *  whether a running job was asked to stop (it ends at its next step or when its worker goes). */
function syncCancel(cancel, job) {
  const stopping = job.state === "running" && Boolean(job.cancel_requested);
  cancel.hidden = !ACTIVE.has(job.state);
  cancel.title = cancelNote();
  if (stopping) {
    cancel.disabled = true;
    setText(cancel, "Stopping…");
  }
  return stopping;
}

async function cancelJob(job, button) {
  button.disabled = true;
  try {
    const view = await api(`/api/jobs/${job.id}/cancel`, { method: "POST" });
    upsertJob(view);
    if (view.state === "running") toast(`Cancel requested. ${cancelNote()}`);
  } catch (err) {
    toast(err.message, "error");
    button.disabled = false;
  }
}

/** Merge a job view into the state and refresh every element showing it. */
export function upsertJob(view) {
  const old = state.jobs.get(view.id);
  // A job only moves forward; a late answer (a POST reply after the job's events) is older news.
  if (old && stateRank(view.state) < stateRank(old.state)) return old;
  // Progress only moves forward too: a REST answer computed before the latest step event
  // must not put the bar back.
  // (Read before the merge below: it writes into ``old``.)
  const had = old && old.progress ? { progress: old.progress, preview: old.preview } : null;
  const stale = had && view.state === old.state && (!view.progress || view.progress.step < had.progress.step);
  const job = old ? Object.assign(old, view) : view;
  if (stale) Object.assign(job, had);
  state.jobs.set(job.id, job);
  if (job.preview) addPreview(job.id, job.progress ? job.progress.step : null, job.preview);
  refreshJob(job.id);
  return job;
}

function stateRank(s) {
  return s === "queued" ? 0 : s === "running" ? 1 : 2;
}

export function addPreview(jobId, step, image) {
  let frames = state.previews.get(jobId);
  if (!frames) state.previews.set(jobId, (frames = []));
  if (frames.length && frames[frames.length - 1].image === image) return;
  if (step !== null && frames.some((f) => f.step === step)) return;
  frames.push({ step, image });
  if (frames.length > MAX_FRAMES) frames.splice(0, frames.length - MAX_FRAMES);
}

export function refreshJob(id) {
  const job = state.jobs.get(id);
  if (!job) return;
  for (const el of document.querySelectorAll(`[data-job-id="${id}"]`)) {
    if (el.classList.contains("job-card")) updateJobCard(el, job);
    else if (el.classList.contains("job-row")) updateJobRow(el, job);
  }
}

// ------------------------------------------------------------------ logs

const logsFetched = new Set();
const logsPending = new Map();

/** Fetch a job's log lines once (events only carry the lines said after we connected). */
export async function ensureLogs(id, force = false) {
  if (logsFetched.has(id) && !force) return;
  logsFetched.add(id);
  logsPending.set(id, []);
  try {
    const view = await api(`/api/jobs/${id}`);
    const merged = [...(view.logs || [])];
    for (const line of logsPending.get(id) || []) if (!merged.includes(line)) merged.push(line);
    state.logs.set(id, merged);
    const old = state.jobs.get(id);
    if (!old || old.state === view.state) upsertJob({ ...view, logs: undefined });
    renderLogs(id);
  } catch {
    logsFetched.delete(id);
  } finally {
    logsPending.delete(id);
  }
}

export function appendLog(id, line) {
  let lines = state.logs.get(id);
  if (!lines) state.logs.set(id, (lines = []));
  lines.push(line);
  if (lines.length > 500) lines.splice(0, lines.length - 500);
  logsPending.get(id)?.push(line);
  for (const pre of document.querySelectorAll(`[data-logs-job="${id}"]`)) {
    const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    pre.textContent += (pre.textContent ? "\n" : "") + line;
    if (stick) pre.scrollTop = pre.scrollHeight;
  }
}

function renderLogs(id) {
  const text = (state.logs.get(id) || []).join("\n");
  for (const pre of document.querySelectorAll(`[data-logs-job="${id}"]`)) {
    if (pre.textContent !== text) {
      pre.textContent = text;
      pre.scrollTop = pre.scrollHeight;
    }
  }
}

// ------------------------------------------------------------------ the card

/** A full card: state, timer, progress, the latest preview and its frames, logs, the video. */
export function jobCard(job, { showSessionLink = true, currentSession = null } = {}) {
  const video = h("video", {
    class: "media-video",
    "data-testid": "result-video",
    controls: true,
    loop: true,
    muted: true,
    autoplay: true,
    playsinline: true,
    preload: "auto",
    hidden: true,
  });
  const el = h(
    "article",
    { class: "job-card", "data-testid": "job-card", "data-job-id": job.id, "data-state": job.state },
    h(
      "header",
      { class: "job-head" },
      h("div", { class: "job-head-main" }, h("span", { class: "job-id" }, `#${job.id}`), h("span", { class: "job-title" })),
      h(
        "div",
        { class: "job-head-side" },
        h("span", { class: "timer mono", "data-testid": "job-timer", "data-timer-job": job.id }),
        h("span", { class: "job-state-slot" }),
        h("button", { type: "button", class: "btn btn-sm btn-danger-ghost", "data-testid": "job-cancel", title: cancelNote(), hidden: true }, "Cancel"),
      ),
    ),
    h("p", { class: "job-prompt muted" }),
    h(
      "div",
      { class: "job-media", "data-testid": "job-media" },
      video,
      h("img", { class: "media-preview", alt: "Live preview of the latents", "data-testid": "preview-image", hidden: true }),
      h("div", { class: "media-placeholder" }, h("div", { class: "spinner" }), h("span", { class: "placeholder-text" })),
      h("span", { class: "media-tag", hidden: true }),
    ),
    progressBar("progress-bar"),
    h("div", { class: "progress-row" }, h("span", { class: "progress-text", "data-testid": "progress-text" })),
    h("div", { class: "job-error", role: "alert", "data-testid": "job-error", hidden: true }),
    h("div", { class: "job-error job-note", "data-testid": "cancel-note", hidden: true }),
    h("div", { class: "strip", "data-testid": "preview-strip", hidden: true }),
    h(
      "details",
      { class: "logs", open: true },
      h("summary", null, "Log"),
      h("pre", { class: "log-lines", "data-testid": "job-logs", "data-logs-job": job.id }),
    ),
    h("footer", { class: "job-foot", hidden: true }),
  );
  el._opts = { showSessionLink, currentSession };
  // Start the result as soon as it can play (autoplay alone skips a video that was hidden).
  video.addEventListener("loadeddata", () => {
    if (!video.hidden && video.paused) video.play().catch(() => {});
  });
  el.querySelector('[data-testid="job-cancel"]').addEventListener("click", (e) => {
    e.stopPropagation();
    cancelJob(state.jobs.get(job.id) || job, e.currentTarget);
  });
  el.querySelector("pre").textContent = (state.logs.get(job.id) || []).join("\n");
  updateJobCard(el, job);
  ensureLogs(job.id);
  return el;
}

export function updateJobCard(el, job) {
  el.dataset.state = job.state;
  setText(el.querySelector(".job-title"), jobTitle(job));
  const prompt = jobPrompt(job);
  const promptEl = el.querySelector(".job-prompt");
  setText(promptEl, prompt ? `“${truncate(prompt, 160)}”` : "");
  promptEl.hidden = !prompt;
  const slot = el.querySelector(".job-state-slot");
  if (slot.dataset.state !== job.state) {
    slot.dataset.state = job.state;
    clear(slot, badge(job.state, job.state, { "data-testid": "job-state" }));
  }
  const stopping = syncCancel(el.querySelector('[data-testid="job-cancel"]'), job);
  const note = el.querySelector('[data-testid="cancel-note"]');
  note.hidden = !stopping;
  if (stopping) setText(note, `Cancel requested. ${cancelNote()}`);
  const info = progressInfo(job);
  updateBar(el.querySelector('[data-testid="progress-bar"]'), info, job.state);
  setText(el.querySelector(".progress-text"), info.text);

  // Media: the video once there, else the latest preview, else a placeholder.
  const video = el.querySelector("video");
  const img = el.querySelector(".media-preview");
  const placeholder = el.querySelector(".media-placeholder");
  const tag = el.querySelector(".media-tag");
  const frames = state.previews.get(job.id) || [];
  const latest = frames.length ? frames[frames.length - 1] : null;
  if (job.video) {
    if (video.dataset.path !== job.video) setMediaSrc(video, job.video);
    video.hidden = false;
    img.hidden = true;
    placeholder.hidden = true;
    tag.hidden = true;
  } else if (latest) {
    if (img.getAttribute("src") !== latest.image) img.src = latest.image;
    img.hidden = false;
    video.hidden = true;
    placeholder.hidden = true;
    tag.hidden = false;
    setText(tag, latest.step !== null ? `preview · step ${latest.step}` : "preview");
  } else {
    video.hidden = true;
    img.hidden = true;
    placeholder.hidden = false;
    tag.hidden = true;
    placeholder.classList.toggle("is-idle", !ACTIVE.has(job.state));
    const text =
      job.state === "queued"
        ? state.paused
          ? "Waiting: the queue is paused"
          : "Waiting in the queue"
        : job.state === "running"
          ? "Loading the model…"
          : job.state === "succeeded"
            ? "No video was written"
            : humanState(job.state);
    setText(placeholder.querySelector(".placeholder-text"), text);
  }

  // Frames seen while denoising.
  const strip = el.querySelector(".strip");
  const sig = latest ? `${frames.length}:${latest.step}:${frames[0].step}` : "";
  if (strip.dataset.sig !== sig) {
    strip.dataset.sig = sig;
    clear(
      strip,
      frames.map((f, i) =>
        h("img", {
          class: "strip-frame",
          src: f.image,
          alt: `step ${f.step}`,
          title: f.step !== null ? `step ${f.step}` : "preview",
          "data-testid": "preview-frame",
          "data-index": String(i),
        }),
      ),
    );
    strip.scrollLeft = strip.scrollWidth;
  }
  strip.hidden = frames.length === 0;

  const error = el.querySelector(".job-error");
  error.hidden = !job.error;
  error.classList.toggle("job-note", job.state !== "failed");
  setText(error, job.error || "");

  const foot = el.querySelector(".job-foot");
  const { showSessionLink, currentSession } = el._opts || {};
  const sid = job.session_id;
  const link = showSessionLink && sid && sid !== currentSession;
  const resumable = sid && (job.state === "cancelled" || job.state === "interrupted");
  if (link || resumable) {
    const sig = `${sid}:${link}:${resumable}`;
    if (foot.dataset.sig !== sig) {
      foot.dataset.sig = sig;
      const resume = resumable
        ? h("button", { type: "button", class: "btn btn-sm", "data-testid": "job-resume", title: "Continue its session from where it stopped" }, "Resume")
        : null;
      resume?.addEventListener("click", () => resumeSession(job, resume));
      clear(
        foot,
        h("span", { class: "muted" }, "Session "),
        h("span", { class: "mono" }, sid),
        h(
          "span",
          { class: "job-foot-actions" },
          resume,
          link ? h("a", { class: "btn btn-sm", href: `#/session/${sid}`, "data-testid": "open-session" }, "Open session →") : null,
        ),
      );
    }
    foot.hidden = false;
  } else foot.hidden = true;
}

async function resumeSession(job, button) {
  button.disabled = true;
  try {
    const next = await api(`/api/sessions/${job.session_id}/resume`, { method: "POST", body: {} });
    upsertJob(next);
    emit({ type: "spawned", job: next, from: job.id });
  } catch (err) {
    toast(err.message, "error");
    button.disabled = false;
  }
}

// ------------------------------------------------------------------ the row

export function jobRow(job, { onSelect, currentSession = null } = {}) {
  const el = h(
    "div",
    { class: "job-row", "data-testid": "job-row", "data-job-id": job.id, tabindex: "0", role: onSelect ? "button" : null },
    h("span", { class: "job-id mono" }, `#${job.id}`),
    h("div", { class: "job-row-main" }, h("span", { class: "job-title" }), h("span", { class: "job-prompt muted" })),
    h("span", { class: "job-state-slot" }),
    h("div", { class: "job-row-progress" }, progressBar("row-progress"), h("span", { class: "row-steps mono muted" })),
    h("span", { class: "timer mono muted", "data-timer-job": job.id }),
    h(
      "div",
      { class: "job-row-actions" },
      h("button", { type: "button", class: "btn btn-sm btn-danger-ghost", "data-testid": "job-cancel", hidden: true }, "Cancel"),
      h("a", { class: "btn btn-sm", "data-testid": "open-session", hidden: true }, "Session"),
    ),
  );
  el.querySelector('[data-testid="job-cancel"]').addEventListener("click", (e) => {
    e.stopPropagation();
    cancelJob(state.jobs.get(job.id) || job, e.currentTarget);
  });
  el.querySelector("a").addEventListener("click", (e) => e.stopPropagation());
  if (onSelect) {
    el.addEventListener("click", () => onSelect(job.id));
    el.addEventListener("keydown", (e) => {
      if (e.key === "Enter") onSelect(job.id);
    });
  }
  el._currentSession = currentSession;
  updateJobRow(el, job);
  return el;
}

export function updateJobRow(el, job) {
  el.dataset.state = job.state;
  setText(el.querySelector(".job-title"), jobTitle(job));
  setText(el.querySelector(".job-prompt"), truncate(jobPrompt(job), 80));
  const slot = el.querySelector(".job-state-slot");
  if (slot.dataset.state !== job.state) {
    slot.dataset.state = job.state;
    clear(slot, badge(job.state, job.state, { "data-testid": "job-state" }));
  }
  const info = progressInfo(job);
  updateBar(el.querySelector(".progress"), info, job.state);
  const p = job.progress;
  setText(
    el.querySelector(".row-steps"),
    job.state === "queued" ? `#${queuePosition(job)} in queue` : p ? `${p.step}/${p.total}` : "",
  );
  syncCancel(el.querySelector('[data-testid="job-cancel"]'), job);
  const link = el.querySelector("a");
  if (job.session_id && job.session_id !== el._currentSession) {
    link.href = `#/session/${job.session_id}`;
    link.hidden = false;
  } else link.hidden = true;
}
