// DreamDojo's panels in the Arc Fabric UI (a UI extension: the core's extensions.js
// imports this module and calls mountGenerate / mountSession with its ctx).
//
// Generate page: a dataset sample picker (path -> task -> episode -> evaluation window)
// with the window's first frame; picking a window sets the parameters dataset, sample and
// samples_per_task. Session page: the ground truth and the prediction playing in sync
// under one control, the action norms per chunk, the metrics, the chunks as they are
// made (progress and previews), and "next chunk" (act) from the dataset or a file.

const PER_CHUNK = 12; // actions, and new frames, per chunk
const ACTION_DIM = 384;

const chunksOf = (numFrames) => Math.max(1, Math.floor((Number(numFrames) - 1) / PER_CHUNK));
const query = (values) => new URLSearchParams(Object.entries(values).map(([k, v]) => [k, String(v)])).toString();

// ---------------------------------------------------------------------- generate page

export function mountGenerate(ctx) {
  const { h, clear, api, el, base } = ctx;
  const path = h("input", { type: "text", class: "dd-path mono", placeholder: "/data/lerobot/gr1_unified (a folder on the server)", "data-testid": "dd-dataset-path", "aria-label": "Dataset folder" });
  const load = h("button", { type: "button", class: "btn btn-sm", "data-testid": "dd-dataset-load" }, "List samples");
  const status = h("p", { class: "muted dd-status", "data-testid": "dd-dataset-status" }, "A LeRobot v2 dataset: its evaluation windows are the samples a rollout starts from.");
  const task = h("select", { "data-testid": "dd-task", "aria-label": "Task", disabled: true });
  const episode = h("select", { "data-testid": "dd-episode", "aria-label": "Episode", disabled: true });
  const windowList = h("select", { "data-testid": "dd-window", "aria-label": "Window", size: "4", disabled: true });
  const frame = h("img", { class: "dd-frame", alt: "First frame of the sample", "data-testid": "dd-first-frame", hidden: true });
  const caption = h("div", { class: "dd-caption muted", "data-testid": "dd-sample-caption" });
  const picker = h(
    "div",
    { class: "dd-picker", hidden: true },
    h("label", { class: "dd-pick" }, h("span", { class: "muted" }, "Task"), task),
    h("label", { class: "dd-pick" }, h("span", { class: "muted" }, "Episode"), episode),
    h("label", { class: "dd-pick" }, h("span", { class: "muted" }, "Window"), windowList),
  );
  clear(
    el,
    h(
      "div",
      { class: "dd-box", "data-testid": "dd-sample-picker" },
      h("div", { class: "dd-box-head" }, h("h3", null, "Dataset sample"), h("span", { class: "tag tag-quiet" }, "DreamDojo")),
      h("div", { class: "dd-row" }, path, load),
      status,
      h("div", { class: "dd-pick-grid" }, picker, h("figure", { class: "dd-figure" }, frame, caption)),
    ),
  );

  let listing = null; // the last answer of the dataset route
  let alive = true;

  function chosen() {
    return listing ? listing.windows.find((w) => String(w.sample) === windowList.value) || null : null;
  }

  function fillEpisodes() {
    const t = listing.tasks.find((x) => String(x.task_index) === task.value);
    clear(episode, (t ? t.episodes : []).map((e) => h("option", { value: String(e) }, `episode ${e}`)));
    fillWindows();
  }

  function fillWindows() {
    const ws = listing.windows.filter((w) => String(w.task_index) === task.value && String(w.episode_index) === episode.value);
    clear(windowList, ws.map((w) => h("option", { value: String(w.sample) }, `#${w.sample} · from frame ${w.start}`)));
    if (ws.length) windowList.value = String(ws[0].sample);
    pick();
  }

  function pick() {
    const w = chosen();
    if (!w) {
      frame.hidden = true;
      caption.textContent = "";
      return;
    }
    ctx.setParams({ dataset: listing.path, sample: w.sample, samples_per_task: listing.samples_per_task });
    const q = query({ path: listing.path, sample: w.sample, chunks: listing.chunks, per_task: listing.samples_per_task });
    ctx.setMediaSrc(frame, `${base}sample/frame.png?${q}`);
    frame.hidden = false;
    clear(
      caption,
      h("strong", null, w.task),
      h("br"),
      `episode ${w.episode_index} · from frame ${w.start} · ${w.chunks} chunk${w.chunks === 1 ? "" : "s"} (${1 + PER_CHUNK * w.chunks} frames) · sample ${w.sample}`,
    );
  }

  async function list() {
    const folder = path.value.trim();
    if (!folder) {
      status.textContent = "Give the dataset's folder first.";
      status.classList.add("dd-error");
      return;
    }
    const p = ctx.params();
    const chunks = chunksOf(p.num_frames || 1 + PER_CHUNK);
    const perTask = Number(p.samples_per_task) || 10;
    load.disabled = true;
    status.classList.remove("dd-error");
    status.textContent = "Reading the dataset…";
    try {
      listing = await api(`${base}dataset?${query({ path: folder, chunks, per_task: perTask })}`);
      if (!alive) return;
      const n = listing.windows.length;
      status.textContent = `${n} evaluation window${n === 1 ? "" : "s"} of ${chunks} chunk${chunks === 1 ? "" : "s"} (${listing.frames} frames) in ${listing.tasks.length} task${listing.tasks.length === 1 ? "" : "s"}; up to ${perTask} per task.`;
      clear(task, listing.tasks.map((t) => h("option", { value: String(t.task_index) }, t.task)));
      for (const s of [task, episode, windowList]) s.disabled = !n;
      picker.hidden = !n;
      const current = Number(p.sample);
      const start = listing.windows.find((w) => w.sample === current && p.dataset === listing.path) || listing.windows[0];
      if (start) {
        task.value = String(start.task_index);
        fillEpisodes();
        episode.value = String(start.episode_index);
        fillWindows();
        windowList.value = String(start.sample);
        pick();
      }
    } catch (err) {
      if (!alive) return;
      listing = null;
      picker.hidden = true;
      frame.hidden = true;
      status.textContent = err.message;
      status.classList.add("dd-error");
    } finally {
      load.disabled = false;
    }
  }

  load.addEventListener("click", list);
  path.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault(); // not the form's submit
      list();
    }
  });
  task.addEventListener("change", fillEpisodes);
  episode.addEventListener("change", fillWindows);
  windowList.addEventListener("change", pick);

  const given = ctx.params().dataset;
  if (given) {
    path.value = given;
    list();
  }
  return () => {
    alive = false;
  };
}

// ---------------------------------------------------------------------- session page

export function mountSession(ctx) {
  const { h, clear, api, el, base, sessionId: id } = ctx;
  let detail = ctx.session;
  let alive = true;
  const params = () => (detail && detail.doc && detail.doc.params) || {};
  const passes = () => (detail && detail.doc && detail.doc.passes) || [];

  // -- the chunks: one segment each, filled as its steps run
  const chunkBar = h("div", { class: "dd-chunks", "data-testid": "dd-chunks" });
  const chunkText = h("span", { class: "muted mono", "data-testid": "dd-chunk-text" });
  let liveStep = null; // the step of the latest progress event of a job on this session

  function renderChunks() {
    const list = passes();
    const step = liveStep ?? detail.step;
    let before = 0;
    let current = list.length;
    const segments = list.map((steps, c) => {
      const done = Math.max(0, Math.min(steps, step - before));
      if (done < steps && current === list.length) current = c;
      before += steps;
      const fill = h("span", { class: "dd-chunk-fill", style: { width: `${(100 * done) / steps}%` } });
      return h("span", { class: `dd-chunk${done >= steps ? " done" : done > 0 ? " running" : ""}`, "data-testid": "dd-chunk", title: `chunk ${c}: ${done}/${steps} steps` }, fill, h("span", { class: "dd-chunk-label" }, String(c)));
    });
    clear(chunkBar, segments);
    const k = list.length;
    chunkText.textContent = current >= k ? `${k} chunk${k === 1 ? "" : "s"} · ${1 + PER_CHUNK * k} frames` : `chunk ${current + 1} of ${k} · step ${step} / ${detail.total_steps}`;
  }

  // -- the two videos under one control
  const truth = h("video", { class: "dd-video", muted: true, playsinline: true, preload: "auto", "data-testid": "dd-truth-video" });
  const pred = h("video", { class: "dd-video", muted: true, playsinline: true, preload: "auto", "data-testid": "dd-pred-video" });
  const truthNote = h("div", { class: "dd-video-note muted", hidden: true, "data-testid": "dd-truth-note" });
  const predPreview = h("img", { class: "dd-video", alt: "Latest preview", hidden: true, "data-testid": "dd-pred-preview" });
  const play = h("button", { type: "button", class: "btn btn-sm dd-play", "data-testid": "dd-play", "aria-label": "Play both" }, "▶ Play");
  const seek = h("input", { type: "range", min: "0", max: "0", step: "1", value: "0", class: "dd-seek", "data-testid": "dd-seek", "aria-label": "Frame of both videos" });
  const frameText = h("span", { class: "mono muted dd-frame-text", "data-testid": "dd-frame" });
  let playing = false;
  let raf = 0;
  const fps = () => Number(params().fps) || 10;
  const frames = () => Number(params().num_frames) || 1;
  const videos = () => [pred, truth].filter((v) => !v.hidden && v.getAttribute("src"));

  function showFrame(f) {
    seek.value = String(f);
    const chunk = f === 0 ? 0 : Math.floor((f - 1) / PER_CHUNK);
    frameText.textContent = `frame ${f} / ${frames() - 1} · chunk ${chunk}`;
  }

  function seekTo(f) {
    const t = (f + 0.5) / fps(); // the middle of the frame: no rounding lands on its neighbour
    for (const v of videos()) v.currentTime = Number.isFinite(v.duration) ? Math.min(t, Math.max(0, v.duration - 0.001)) : t;
    showFrame(f);
  }

  function tick() {
    raf = 0;
    if (!playing) return;
    const [lead, ...rest] = videos();
    if (lead) {
      for (const v of rest) if (Math.abs(v.currentTime - lead.currentTime) > 0.5 / fps()) v.currentTime = lead.currentTime;
      showFrame(Math.min(frames() - 1, Math.floor(lead.currentTime * fps())));
    }
    raf = requestAnimationFrame(tick);
  }

  function setPlaying(on) {
    playing = on && videos().length > 0;
    play.textContent = playing ? "❚❚ Pause" : "▶ Play";
    play.setAttribute("aria-pressed", playing ? "true" : "false");
    for (const v of videos()) {
      if (playing) v.play().catch(() => {});
      else v.pause();
    }
    if (playing && !raf) raf = requestAnimationFrame(tick);
  }

  play.addEventListener("click", () => setPlaying(!playing));
  seek.addEventListener("input", () => {
    setPlaying(false);
    seekTo(Number(seek.value));
  });
  // Both loop together: the prediction leads; when it ends, both start again.
  pred.addEventListener("ended", () => {
    if (!playing) return;
    for (const v of videos()) v.currentTime = 0;
    setPlaying(true);
  });
  truth.addEventListener("ended", () => {
    if (pred.hidden || !pred.getAttribute("src")) pred.dispatchEvent(new Event("ended"));
  });

  // -- actions, metrics, previews, next chunk
  const chart = h("div", { class: "dd-chart", "data-testid": "dd-action-chart" }, h("span", { class: "muted" }, "Reading the actions…"));
  const metrics = h("div", { class: "dd-metrics", "data-testid": "dd-metrics" }, h("span", { class: "muted" }, "–"));
  const previews = h("div", { class: "dd-previews", "data-testid": "dd-previews" });
  const chunkPreviews = new Map(); // chunk -> latest preview image (data URL)

  const nextDataset = h("button", { type: "button", class: "btn btn-primary btn-sm", "data-testid": "dd-next-dataset" }, "Next chunk from the dataset");
  const file = h("input", { type: "file", accept: ".npy,.json,application/json", "data-testid": "dd-actions-file", "aria-label": "Actions file (.npy or .json, 12 x 384)" });
  const nextFile = h("button", { type: "button", class: "btn btn-sm", "data-testid": "dd-next-file", disabled: true }, "Next chunk from the file");
  const nextStatus = h("div", { class: "dd-next-status muted", "data-testid": "dd-next-status" });
  let fileActions = null;
  let nextJob = null; // the act job queued from here

  clear(
    el,
    h(
      "div",
      { class: "panel dd-session", "data-testid": "dd-session-panel" },
      h("div", { class: "panel-head" }, h("h2", null, "Rollout"), chunkText),
      chunkBar,
      h(
        "div",
        { class: "dd-videos" },
        h("figure", { class: "dd-cell" }, h("figcaption", null, "Ground truth"), truth, truthNote),
        h("figure", { class: "dd-cell" }, h("figcaption", null, "Prediction"), pred, predPreview),
      ),
      h("div", { class: "dd-controls" }, play, seek, frameText),
      h(
        "div",
        { class: "dd-grid" },
        h("div", { class: "dd-box" }, h("div", { class: "dd-box-head" }, h("h3", null, "Action norm per chunk")), chart),
        h("div", { class: "dd-box" }, h("div", { class: "dd-box-head" }, h("h3", null, "Against the ground truth")), metrics),
      ),
      h("div", { class: "dd-box" }, h("div", { class: "dd-box-head" }, h("h3", null, "Chunks as they were made"), h("span", { class: "muted" }, "latest preview of each")), previews),
      h(
        "div",
        { class: "dd-box", "data-testid": "dd-next" },
        h("div", { class: "dd-box-head" }, h("h3", null, "Next chunk"), h("span", { class: "muted" }, `${PER_CHUNK} actions → ${PER_CHUNK} new frames, as a new session`)),
        h("div", { class: "dd-row" }, nextDataset, h("span", { class: "muted" }, "or"), file, nextFile),
        nextStatus,
      ),
    ),
  );

  async function loadChart() {
    try {
      const norms = await api(`${base}sessions/${id}/actions`);
      if (alive) clear(chart, actionChart(h, norms));
    } catch (err) {
      if (alive) clear(chart, h("span", { class: "muted" }, err.message));
    }
  }

  let metricsFor = null; // the video the metrics shown are of
  async function loadMetrics() {
    if (!detail.video || !params().dataset || metricsFor === detail.video) {
      if (!params().dataset) clear(metrics, h("span", { class: "muted" }, "No ground truth: this rollout was not made from a dataset sample."));
      else if (!detail.video) clear(metrics, h("span", { class: "muted" }, "Once the video is written."));
      return;
    }
    metricsFor = detail.video;
    clear(metrics, h("span", { class: "muted" }, "Computing…"));
    try {
      const m = await api(`${base}sessions/${id}/metrics`);
      if (!alive) return;
      if (!m.available) {
        clear(metrics, h("span", { class: "muted", "data-testid": "dd-metrics-missing" }, m.message));
        return;
      }
      const cell = (name, key, digits, better) =>
        h("div", { class: "dd-metric", "data-metric": key }, h("span", { class: "dd-metric-name" }, name, h("span", { class: "muted" }, ` ${better}`)), h("span", { class: "dd-metric-value mono" }, m[key] === null || m[key] === undefined ? "–" : Number(m[key]).toFixed(digits)));
      const notes = (m.notes || []).map((n) => h("li", null, n));
      clear(
        metrics,
        h("div", { class: "dd-metric-grid" }, cell("PSNR", "psnr", 2, "dB ↑"), cell("SSIM", "ssim", 4, "↑"), cell("LPIPS", "lpips", 4, "↓")),
        h("div", { class: "muted dd-metric-sub" }, `${m.frames} frames at ${m.width}×${m.height}, the mean of the per-frame scores`),
        notes.length ? h("ul", { class: "dd-notes muted", "data-testid": "dd-metric-notes" }, notes) : null,
      );
    } catch (err) {
      metricsFor = null;
      if (alive) clear(metrics, h("span", { class: "muted" }, err.message));
    }
  }

  function chunkOfStep(step) {
    let before = 0;
    const list = passes();
    for (let c = 0; c < list.length; c++) {
      before += list[c];
      if (step <= before) return c; // a step's preview shows the latents after it
    }
    return list.length - 1;
  }

  function renderPreviews() {
    const list = passes();
    // A chunk that ends by the step this session branched at was made by an ancestor.
    const from = Number(detail.parent_step) || 0;
    const inherited = (c) => list.slice(0, c + 1).reduce((a, b) => a + b, 0) <= from;
    clear(
      previews,
      list.map((_, c) =>
        h(
          "figure",
          { class: "dd-thumb", "data-testid": "dd-preview", "data-chunk": String(c) },
          chunkPreviews.has(c)
            ? h("img", { src: chunkPreviews.get(c), alt: `Chunk ${c} preview` })
            : h("div", { class: "dd-thumb-empty", title: inherited(c) ? "Made by the session this one continues" : "" }, inherited(c) ? "earlier" : "–"),
          h("figcaption", { class: "muted" }, `chunk ${c}`),
        ),
      ),
    );
  }

  function collectPreviews() {
    for (const job of ctx.state.jobs.values()) {
      if (job.session_id !== id) continue;
      for (const p of ctx.state.previews.get(job.id) || []) if (p.step !== null) chunkPreviews.set(chunkOfStep(p.step), p.image);
    }
  }

  let truthFor = null;
  function renderVideos() {
    const p = params();
    seek.max = String(Math.max(0, frames() - 1));
    if (p.width && p.height) el.style.setProperty("--dd-ar", `${p.width} / ${p.height}`);
    if (p.dataset) {
      if (truthFor !== id) {
        truthFor = id;
        ctx.setMediaSrc(truth, `${base}sessions/${id}/truth.mp4`);
      }
      truth.hidden = false;
      truthNote.hidden = true;
    } else {
      truth.hidden = true;
      truthNote.hidden = false;
      truthNote.textContent = "Not made from a dataset sample: no ground truth.";
    }
    if (detail.video) {
      ctx.setMediaSrc(pred, detail.video);
      pred.hidden = false;
      predPreview.hidden = true;
    } else {
      pred.hidden = true;
      const last = [...chunkPreviews.entries()].sort((a, b) => a[0] - b[0]).pop();
      predPreview.hidden = !last;
      if (last) predPreview.src = last[1];
    }
    if (!playing) showFrame(Number(seek.value));
  }

  function renderNext() {
    const done = detail.status === "completed";
    const why = done ? "" : `The session is ${detail.status}: a next chunk follows a finished rollout.`;
    nextDataset.disabled = !done || !params().dataset;
    nextDataset.title = !params().dataset ? "This rollout was not made from a dataset sample: give the actions as a file" : why;
    nextFile.disabled = !done || !fileActions;
    if (!nextJob && why) nextStatus.textContent = why;
  }

  function showNextJob() {
    if (!nextJob) return;
    const job = ctx.state.jobs.get(nextJob) || { id: nextJob, state: "queued" };
    const k = passes().length + 1;
    clear(
      nextStatus,
      `Job #${job.id} (act): ${job.state}. `,
      job.session_id ? h("a", { href: `#/session/${job.session_id}`, "data-testid": "dd-next-open" }, `Open the rollout of ${k} chunks →`) : null,
      job.error ? h("span", { class: "dd-error" }, ` ${job.error}`) : null,
    );
  }

  async function act(body, button) {
    button.disabled = true;
    nextStatus.classList.remove("dd-error");
    nextStatus.textContent = "Queuing…";
    try {
      const job = await api(`/api/sessions/${id}/act`, { method: "POST", body });
      nextJob = job.id;
      ctx.submitted(job);
      showNextJob();
    } catch (err) {
      nextStatus.textContent = err.message;
      nextStatus.classList.add("dd-error");
    } finally {
      if (alive) renderNext();
    }
  }

  nextDataset.addEventListener("click", () => act({ from_dataset: true }, nextDataset));
  nextFile.addEventListener("click", () => fileActions && act({ actions: fileActions }, nextFile));
  file.addEventListener("change", async () => {
    fileActions = null;
    nextStatus.classList.remove("dd-error");
    const f = file.files && file.files[0];
    if (f) {
      try {
        fileActions = await readActions(f);
        nextStatus.textContent = `${f.name}: ${fileActions.length} × ${ACTION_DIM} actions, ready.`;
      } catch (err) {
        nextStatus.textContent = `${f.name}: ${err.message}`;
        nextStatus.classList.add("dd-error");
      }
    }
    renderNext();
  });

  ctx.listen((ev) => {
    if (ev.type === "progress" && ev.session_id === id) {
      liveStep = ev.step;
      renderChunks();
    } else if (ev.type === "preview" && ev.session_id === id) {
      if (ev.step !== null && ev.step !== undefined) chunkPreviews.set(chunkOfStep(ev.step), ev.image);
      renderPreviews();
      if (!detail.video) renderVideos();
    } else if (ev.type === "job" && ev.job.id === nextJob) showNextJob();
  });

  function update(next) {
    detail = next;
    if (!ctx.state.jobs.size || detail.status !== "running") liveStep = null;
    collectPreviews();
    renderChunks();
    renderVideos();
    renderPreviews();
    renderNext();
    showNextJob();
    loadMetrics();
  }

  update(detail);
  loadChart();
  return {
    update,
    unmount() {
      alive = false;
      setPlaying(false);
      if (raf) cancelAnimationFrame(raf);
    },
  };
}

// ---------------------------------------------------------------------- the chart

/** An inline SVG: a bar per chunk (its actions' mean norm) and a line through every action's norm. */
function actionChart(h, norms) {
  const NS = "http://www.w3.org/2000/svg";
  const s = (tag, attrs, ...kids) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    for (const kid of kids) e.append(kid);
    return e;
  };
  const rows = norms.rows || [];
  const chunks = norms.chunks || [];
  if (!rows.length) return h("span", { class: "muted" }, "No actions.");
  const W = 480;
  const H = 150;
  const pad = { l: 36, r: 8, t: 10, b: 22 };
  const top = Math.max(...rows, 1e-6) * 1.1;
  const x = (i) => pad.l + ((W - pad.l - pad.r) * i) / rows.length;
  const y = (v) => H - pad.b - ((H - pad.t - pad.b) * v) / top;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "dd-chart-svg", role: "img", "aria-label": "Action norm per chunk" });
  for (const v of [0, top / 2, top / 1.1]) {
    svg.append(s("line", { x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v), class: "dd-grid-line" }));
    svg.append(s("text", { x: pad.l - 4, y: y(v) + 3, class: "dd-axis", "text-anchor": "end" }, v.toFixed(v >= 10 ? 0 : 2)));
  }
  for (const c of chunks) {
    const x0 = x(c.chunk * norms.per_chunk);
    const x1 = x((c.chunk + 1) * norms.per_chunk);
    const bar = s("rect", { x: x0 + 2, y: y(c.mean), width: Math.max(1, x1 - x0 - 4), height: Math.max(0, y(0) - y(c.mean)), class: "dd-bar", "data-testid": "dd-chart-bar" });
    bar.append(s("title", null, `chunk ${c.chunk}: mean ${c.mean.toFixed(3)}, max ${c.max.toFixed(3)}`));
    svg.append(bar);
    svg.append(s("text", { x: (x0 + x1) / 2, y: H - 6, class: "dd-axis", "text-anchor": "middle" }, `chunk ${c.chunk}`));
  }
  const points = rows.map((v, i) => `${x(i + 0.5).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  svg.append(s("polyline", { points, class: "dd-line" }));
  return h("div", null, svg, h("div", { class: "dd-legend muted" }, h("span", { class: "dd-key dd-key-bar" }), "mean per chunk ", h("span", { class: "dd-key dd-key-line" }), "each action (L2 norm of its 384 dims)"));
}

// ---------------------------------------------------------------------- action files

/** A chunk's actions from a .json (12 rows of 384 numbers) or .npy file, as a JSON array. */
export async function readActions(file) {
  const rows = file.name.toLowerCase().endsWith(".npy") ? parseNpy(await file.arrayBuffer()) : JSON.parse(await file.text());
  if (!Array.isArray(rows) || rows.length !== PER_CHUNK || !rows.every((r) => Array.isArray(r) && r.length === ACTION_DIM)) {
    const shape = Array.isArray(rows) ? `${rows.length} × ${Array.isArray(rows[0]) ? rows[0].length : "?"}` : typeof rows;
    throw new Error(`expected ${PER_CHUNK} rows of ${ACTION_DIM} numbers, got ${shape}`);
  }
  if (!rows.every((r) => r.every((v) => typeof v === "number" && Number.isFinite(v)))) throw new Error("every value must be a finite number");
  return rows;
}

/** A 2-D .npy array (little-endian float32/float64/int32/int64, C order) as rows. */
export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes[0] !== 0x93 || String.fromCharCode(...bytes.slice(1, 6)) !== "NUMPY") throw new Error("not a .npy file");
  const major = bytes[6];
  const view = new DataView(buffer);
  const headerLen = major >= 2 ? view.getUint32(8, true) : view.getUint16(8, true);
  const start = major >= 2 ? 12 : 10;
  const header = new TextDecoder().decode(bytes.slice(start, start + headerLen));
  const descr = /'descr':\s*'([^']+)'/.exec(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !shape) throw new Error("a .npy header without descr or shape");
  if (/'fortran_order':\s*True/.test(header)) throw new Error("a Fortran-ordered .npy: save it in C order");
  const dims = shape[1].split(",").map((d) => d.trim()).filter(Boolean).map(Number);
  if (dims.length !== 2) throw new Error(`a ${dims.length}-D array: expected ${PER_CHUNK} × ${ACTION_DIM}`);
  const kinds = { "<f4": [4, "getFloat32"], "<f8": [8, "getFloat64"], "<i4": [4, "getInt32"], "<i8": [8, "getBigInt64"] };
  const kind = kinds[descr[1]];
  if (!kind) throw new Error(`dtype ${descr[1]}: give float32, float64, int32 or int64`);
  const [size, getter] = kind;
  let at = start + headerLen;
  const rows = [];
  for (let r = 0; r < dims[0]; r++) {
    const row = [];
    for (let c = 0; c < dims[1]; c++, at += size) row.push(Number(view[getter](at, true)));
    rows.push(row);
  }
  return rows;
}
