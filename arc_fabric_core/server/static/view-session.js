// One session: its video (with a mask drawn on it for edits), the lineage tree, a form for
// each operation its model takes (from the operations registry), step previews, its jobs,
// and its parameters.

import { ACTIVE, api, badge, clear, debounce, fullTime, h, humanize, listen, relTime, setMediaSrc, setText, shortId, state, toast, truncate } from "./core.js";
import { mountExtensions } from "./extensions.js";
import { numberBounds, readInputs, requestFields, schemaProps } from "./form.js";
import { cancelNote, jobCard, jobRow, startJobTimers, upsertJob } from "./jobs.js";
import { capabilitiesOf, modelNamed, operationsOf } from "./models.js";
import { loadOperations, loadSchedules, loadedOperations } from "./operations.js";

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

/** An operation's summary as a sentence ("fork at a step…" -> "Fork at a step…."). */
function sentence(text) {
  const s = String(text || "").trim();
  if (!s) return "";
  return `${s.charAt(0).toUpperCase()}${s.slice(1)}${/[.!?…]$/.test(s) ? "" : "."}`;
}

function sessionJobs(id, children = []) {
  return [...state.jobs.values()]
    .filter((j) => (j.payload && j.payload.session === id) || j.session_id === id || children.includes(j.session_id))
    .sort((a, b) => b.id - a.id);
}

function opLabel(s) {
  if (!s) return "";
  if (s.operation === "create" || !s.operation) return "create";
  return `${s.operation} @ ${s.parent_step}`;
}

export function mountSession(root, id) {
  let detail = null;
  let list = [];
  let alive = true;
  let tab = "fork";
  let mask = null; // {x0, y0, x1, y1} in video pixels
  let drag = null;
  let stepPreview = null; // {step, video} while a decoded step is shown
  let formsFilled = false;
  /** Whether this session's model takes a mask with an edit (its capabilities say so). */
  const masking = () => Boolean(detail && (capabilitiesOf(detail.model) || {}).masks);

  // ---------------------------------------------------------------- skeleton
  const crumbs = h("nav", { class: "crumbs" }, h("a", { href: "#/history" }, "History"), h("span", { class: "crumb-sep" }, "/"), h("span", { class: "mono" }, id));
  const head = h("div", { class: "session-head" });
  const loadError = h("div", { class: "form-error", role: "alert", "data-testid": "session-error", hidden: true });

  const video = h("video", { class: "stage-video", "data-testid": "session-video", controls: true, loop: true, muted: true, autoplay: true, playsinline: true, preload: "auto", hidden: true });
  const livePreview = h("img", { class: "stage-preview", alt: "Live preview", "data-testid": "session-preview", hidden: true });
  const canvas = h("canvas", { class: "mask-canvas", "data-testid": "mask-canvas", "aria-label": "Drag to draw the edit region" });
  const placeholder = h("div", { class: "stage-placeholder" });
  const stage = h("div", { class: "stage", "data-testid": "video-stage" }, video, livePreview, canvas, placeholder);
  const stageNote = h("span", { class: "stage-note muted", "data-testid": "stage-note" });
  const scrubber = h("input", { type: "range", min: "0", max: "0", value: "0", step: "1", class: "scrubber", "data-testid": "frame-scrubber", "aria-label": "Frame" });
  const scrubLabel = h("span", { class: "mono muted scrub-label" });
  const scrubRow = h("div", { class: "scrub-row", hidden: true }, h("span", { class: "muted" }, "Frame"), scrubber, scrubLabel);
  const decodeSelect = h("select", { "data-testid": "decode-step-select", "aria-label": "Checkpointed step" });
  const decodeButton = h("button", { type: "button", class: "btn btn-sm", "data-testid": "decode-button" }, "Preview step");
  const finalButton = h("button", { type: "button", class: "btn btn-sm btn-ghost", "data-testid": "show-final", hidden: true }, "Back to final");
  const decodeTools = h("div", { class: "stage-tools", "data-testid": "decode-tools" }, h("label", { class: "muted" }, "Decode a checkpoint"), decodeSelect, decodeButton, finalButton);
  const stageBar = h("div", { class: "stage-bar" }, stageNote, decodeTools);
  const jobsBox = h("div", { class: "session-jobs", "data-testid": "session-jobs" });
  const jobRows = h("div", { class: "job-list job-list-tight", "data-testid": "session-job-rows" });
  const jobsPanel = h(
    "section",
    { class: "panel", hidden: true },
    h("div", { class: "panel-head" }, h("h2", null, "Jobs on this session")),
    jobsBox,
    jobRows,
  );
  const spawned = new Set(); // jobs started from this page: shown in full
  const params = h("div", { "data-testid": "session-params" });
  const tree = h("div", { class: "tree-wrap", "data-testid": "lineage-tree" });
  const treeCount = h("span", { class: "muted" });
  const actions = buildActions();
  // The plugins' panels for this session's model (extensions.js), mounted once it is known.
  const extHost = h("div", { class: "ext-host", "data-testid": "extension-host" });
  let extensions = null;

  const layout = h(
    "div",
    { class: "session-layout", hidden: true },
    h(
      "div",
      { class: "session-main" },
      h("section", { class: "panel panel-stage" }, h("div", { class: "stage-wrap" }, stage), scrubRow, stageBar),
      extHost,
      jobsPanel,
    ),
    h(
      "aside",
      { class: "session-side" },
      h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", null, "Lineage"), treeCount), tree),
      actions.panel,
      h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", null, "Parameters")), params),
    ),
  );
  const loading = h("div", { class: "empty" }, "Loading session…");
  clear(root, h("div", { class: "page page-session", "data-testid": "session-page", "data-session-id": id }, crumbs, head, loadError, loading, layout));

  // ---------------------------------------------------------------- data
  async function load() {
    try {
      const [d, l] = await Promise.all([api(`/api/sessions/${id}`), api("/api/sessions?limit=1000")]);
      if (!alive) return;
      detail = d;
      list = l;
      loadError.hidden = true;
      loading.hidden = true;
      layout.hidden = false;
      render();
    } catch (err) {
      if (!alive) return;
      loading.hidden = true;
      loadError.textContent = err.status === 404 ? `This session does not exist (any more). ${err.detail}` : err.message;
      loadError.hidden = false;
      if (err.status === 404 || err.status === 422) {
        layout.hidden = true;
        clear(head);
      }
    }
  }
  const reload = debounce(load, 150);

  function render() {
    renderHead();
    renderStage();
    renderTree();
    renderParams();
    renderJobs();
    actions.update();
    if (!extensions && detail.model) extensions = mountExtensions(extHost, "mountSession", detail.model, { session: detail, sessionId: id });
    extensions?.update(detail);
  }

  // ---------------------------------------------------------------- head
  // The job running the session (a decode job only reads it).
  function activeJob() {
    return sessionJobs(id).find((j) => ACTIVE.has(j.state) && j.kind !== "decode" && (j.session_id === id || (j.kind === "resume" && j.payload.session === id)));
  }

  function renderHead() {
    const d = detail;
    const doc = d.doc || {};
    const active = activeJob();
    const stopping = Boolean(active && active.state === "running" && active.cancel_requested);
    const cancel = h(
      "button",
      { type: "button", class: "btn btn-danger-ghost", "data-testid": "session-cancel", title: cancelNote(), hidden: !active, disabled: stopping },
      stopping ? "Stopping…" : "Cancel job",
    );
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      try {
        const job = await api(`/api/sessions/${id}/cancel`, { method: "POST" });
        upsertJob(job);
        if (job.state === "running") toast(`Cancel requested. ${cancelNote()}`);
      } catch (err) {
        toast(err.message, "error");
        cancel.disabled = false;
      }
    });
    const del = h("button", { type: "button", class: "btn btn-danger-ghost", "data-testid": "session-delete" }, "Delete");
    del.addEventListener("click", async () => {
      if (del.dataset.confirm !== "1") {
        del.dataset.confirm = "1";
        setText(del, "Click again to delete");
        setTimeout(() => {
          if (del.isConnected) {
            del.dataset.confirm = "";
            setText(del, "Delete");
          }
        }, 4000);
        return;
      }
      del.disabled = true;
      try {
        const out = await api(`/api/sessions/${id}`, { method: "DELETE" });
        toast(`Session ${shortId(id)} deleted`);
        location.hash = out && d.parent ? `#/session/${d.parent}` : "#/history";
      } catch (err) {
        toast(err.message, "error");
        del.disabled = false;
      }
    });
    clear(
      head,
      h(
        "div",
        { class: "session-title" },
        h("h1", { "data-testid": "session-title" }, d.prompt ? truncate(d.prompt, 120) : "Untitled session"),
        h(
          "div",
          { class: "session-badges" },
          badge(d.status, d.status, { "data-testid": "session-status" }),
          h("span", { class: "tag", "data-testid": "session-op" }, d.operation === "create" ? "original" : `${d.operation} of `, d.parent ? h("a", { href: `#/session/${d.parent}`, class: "mono" }, shortId(d.parent)) : null, d.parent ? ` at step ${d.parent_step}` : null),
          h("span", { class: "tag mono" }, `${d.model}/${d.variant}`),
          h("span", { class: "tag", "data-testid": "session-steps" }, `step ${d.step} / ${d.total_steps}`),
          d.locked ? h("span", { class: "tag tag-warn", title: "A job holds this session" }, "locked") : null,
          h("span", { class: "muted", title: fullTime(d.created_at) }, relTime(d.created_at)),
          h("span", { class: "mono muted", "data-testid": "session-id" }, d.id),
        ),
        doc.error ? h("div", { class: "form-error" }, doc.error) : null,
      ),
      h("div", { class: "session-actions" }, cancel, del),
    );
  }

  // ---------------------------------------------------------------- stage
  function videoDims() {
    const p = (detail && detail.doc && detail.doc.params) || {};
    return { W: video.videoWidth || p.width || 1, H: video.videoHeight || p.height || 1 };
  }

  function renderStage() {
    const p = detail.doc.params || {};
    if (p.width && p.height) {
      stage.style.aspectRatio = `${p.width} / ${p.height}`;
      stage.style.setProperty("--ar", String(p.width / p.height));
    }
    const want = stepPreview ? stepPreview.video : detail.video;
    if (want) {
      if (video.dataset.path !== want) setMediaSrc(video, want);
      video.hidden = false;
      livePreview.hidden = true;
      placeholder.hidden = true;
    } else {
      video.hidden = true;
      const job = sessionJobs(id).find((j) => j.session_id === id && j.state === "running");
      const frames = job ? state.previews.get(job.id) : null;
      if (frames && frames.length) {
        livePreview.src = frames[frames.length - 1].image;
        livePreview.hidden = false;
        placeholder.hidden = true;
      } else {
        livePreview.hidden = true;
        placeholder.hidden = false;
        setText(placeholder, detail.status === "running" ? "Denoising…" : detail.status === "completed" ? "No video written yet: decode the final latents below." : `No video: the session is ${detail.status}.`);
      }
    }
    const steps = detail.checkpoint_steps || [];
    const opts = steps.map((s) => String(s));
    if (decodeSelect.dataset.opts !== opts.join(",")) {
      const keep = decodeSelect.value;
      decodeSelect.dataset.opts = opts.join(",");
      clear(decodeSelect, opts.map((s) => h("option", { value: s }, `step ${s}${Number(s) === detail.total_steps ? " (final)" : ""}`)));
      decodeSelect.value = opts.includes(keep) ? keep : opts[Math.floor(opts.length / 2)] || "";
    }
    decodeButton.disabled = !steps.length;
    decodeTools.hidden = !(operationsOf(detail.model) || []).includes("decode");
    finalButton.hidden = !stepPreview;
    setText(stageNote, stepPreview ? `Showing step ${stepPreview.step} (decoded checkpoint)` : detail.video ? "Final video" : "");
    const frames = Number(p.num_frames) || 1;
    scrubber.max = String(Math.max(0, frames - 1));
    setText(scrubLabel, `${scrubber.value} / ${frames - 1}`);
    setMode();
  }

  let wasEditing = false;
  function setMode() {
    // Drawing a mask on a paused frame: an edit of a model that takes masks.
    const editing = tab === "edit" && masking();
    if (wasEditing && !editing && !video.hidden) video.play().catch(() => {});
    wasEditing = editing;
    stage.classList.toggle("masking", editing);
    scrubRow.hidden = !editing || video.hidden;
    video.controls = !editing;
    if (editing && !video.paused) video.pause();
    drawMask();
  }

  function seekFrame(f) {
    const fps = Number((detail && detail.doc.params.fps) || 8);
    video.pause();
    const t = (f + 0.5) / fps;
    video.currentTime = Number.isFinite(video.duration) ? Math.min(t, Math.max(0, video.duration - 0.001)) : t;
    setText(scrubLabel, `${f} / ${scrubber.max}`);
  }
  scrubber.addEventListener("input", () => seekFrame(Number(scrubber.value)));

  decodeButton.addEventListener("click", async () => {
    const step = Number(decodeSelect.value);
    decodeButton.disabled = true;
    setText(stageNote, `Decoding step ${step}…`);
    try {
      const out = await api(`/api/sessions/${id}/decode`, { method: "POST", body: { step } });
      stepPreview = { step: out.step, video: out.video };
      renderStage();
    } catch (err) {
      toast(err.message, "error");
      setText(stageNote, err.message);
    } finally {
      decodeButton.disabled = false;
    }
  });
  finalButton.addEventListener("click", () => {
    stepPreview = null;
    renderStage();
  });
  video.addEventListener("loadedmetadata", drawMask);

  // The mask: drag on the frame; kept in video pixels.
  function toVideo(e) {
    const r = canvas.getBoundingClientRect();
    const { W, H } = videoDims();
    return {
      x: clamp(Math.round(((e.clientX - r.left) / r.width) * W), 0, W),
      y: clamp(Math.round(((e.clientY - r.top) / r.height) * H), 0, H),
    };
  }
  canvas.addEventListener("pointerdown", (e) => {
    if (tab !== "edit" || !masking() || e.button !== 0) return;
    e.preventDefault();
    canvas.setPointerCapture(e.pointerId);
    drag = toVideo(e);
    mask = null;
    drawMask();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const p = toVideo(e);
    mask = { x0: Math.min(drag.x, p.x), y0: Math.min(drag.y, p.y), x1: Math.max(drag.x, p.x), y1: Math.max(drag.y, p.y) };
    drawMask();
  });
  const endDrag = () => {
    if (!drag) return;
    drag = null;
    if (mask && (mask.x1 - mask.x0 < 1 || mask.y1 - mask.y0 < 1)) mask = null;
    actions.showMask();
    drawMask();
  };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);

  function drawMask() {
    const r = canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(r.width * dpr));
    const hgt = Math.max(1, Math.round(r.height * dpr));
    if (canvas.width !== w) canvas.width = w;
    if (canvas.height !== hgt) canvas.height = hgt;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, w, hgt);
    if (tab !== "edit" || !masking() || !mask) return;
    const { W, H } = videoDims();
    const sx = w / W;
    const sy = hgt / H;
    const x = mask.x0 * sx;
    const y = mask.y0 * sy;
    const mw = (mask.x1 - mask.x0) * sx;
    const mh = (mask.y1 - mask.y0) * sy;
    ctx.fillStyle = "rgba(8, 10, 16, 0.55)";
    ctx.fillRect(0, 0, w, hgt);
    ctx.clearRect(x, y, mw, mh);
    ctx.fillStyle = "rgba(124, 92, 255, 0.18)";
    ctx.fillRect(x, y, mw, mh);
    ctx.lineWidth = 2 * dpr;
    ctx.setLineDash([6 * dpr, 4 * dpr]);
    ctx.strokeStyle = "#a48bff";
    ctx.strokeRect(x + dpr, y + dpr, Math.max(0, mw - 2 * dpr), Math.max(0, mh - 2 * dpr));
    ctx.setLineDash([]);
    const label = `${mask.x1 - mask.x0}×${mask.y1 - mask.y0}`;
    ctx.font = `${12 * dpr}px ui-monospace, monospace`;
    const tw = ctx.measureText(label).width + 8 * dpr;
    const ly = y > 18 * dpr ? y - 18 * dpr : y + mh + 2 * dpr;
    ctx.fillStyle = "#7c5cff";
    ctx.fillRect(x, ly, tw, 16 * dpr);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, x + 4 * dpr, ly + 12 * dpr);
  }
  const resizer = new ResizeObserver(() => drawMask());
  resizer.observe(stage);

  // ---------------------------------------------------------------- lineage
  function renderTree() {
    const d = detail;
    const byId = new Map(list.map((s) => [s.id, s]));
    byId.set(d.id, d);
    const kids = new Map();
    for (const s of list) {
      if (!s.parent) continue;
      if (!kids.has(s.parent)) kids.set(s.parent, []);
      kids.get(s.parent).push(s);
    }
    const chain = [...(d.ancestors || []), d.id];

    function node(sid, relation) {
      const s = byId.get(sid);
      return h(
        "a",
        {
          class: `tree-node rel-${relation}`,
          href: `#/session/${sid}`,
          "data-testid": "tree-node",
          "data-session-id": sid,
          "data-relation": relation,
          "aria-current": relation === "current" ? "page" : null,
          title: s ? `${sid}\n${s.prompt || ""}` : sid,
        },
        h("span", { class: `status-dot status-${s ? s.status : "unknown"}`, title: s ? s.status : "" }),
        h("span", { class: "node-op" }, s ? opLabel(s) : "?"),
        h("span", { class: "node-id mono" }, shortId(sid)),
        h("span", { class: "node-prompt" }, s && s.prompt ? truncate(s.prompt, 42) : ""),
      );
    }

    function descendants(sid, depth) {
      const ids = sid === d.id ? [...(d.children || [])] : (kids.get(sid) || []).map((s) => s.id);
      if (!ids.length) return null;
      if (depth > 5) return h("ul", null, h("li", { class: "muted tree-more" }, `${ids.length} more…`));
      ids.sort((a, b) => String((byId.get(a) || {}).created_at).localeCompare(String((byId.get(b) || {}).created_at)));
      return h("ul", null, ids.map((c) => h("li", null, node(c, sid === d.id ? "child" : "descendant"), descendants(c, depth + 1))));
    }

    let inner = h("li", { class: "is-current" }, node(d.id, "current"), descendants(d.id, 1));
    for (let i = chain.length - 2; i >= 0; i--) {
      const others = (kids.get(chain[i]) || []).filter((s) => s.id !== chain[i + 1]);
      inner = h(
        "li",
        null,
        node(chain[i], "ancestor"),
        h(
          "ul",
          null,
          inner,
          others.length
            ? h("li", { class: "tree-more" }, h("a", { href: `#/session/${chain[i]}`, class: "muted" }, `+ ${others.length} other branch${others.length === 1 ? "" : "es"}`))
            : null,
        ),
      );
    }
    const nAnc = chain.length - 1;
    const nKids = (d.children || []).length;
    setText(treeCount, `${nAnc} ancestor${nAnc === 1 ? "" : "s"} · ${nKids} child${nKids === 1 ? "" : "ren"}`);
    clear(tree, h("ul", { class: "tree" }, inner));
  }

  // ---------------------------------------------------------------- params and jobs
  function renderParams() {
    const doc = detail.doc || {};
    const p = doc.params || {};
    const overrides = doc.overrides || {};
    const fixed = new Set(((state.models.find((m) => m.name === detail.model) || {}).fixed_params) || []);
    const meta = [
      ["device", doc.device],
      ["dtype", doc.dtype],
      ["checkpoints", `${(detail.checkpoint_steps || []).length} (${summarizeSteps(detail.checkpoint_steps || [])})`],
      ["schedule", doc.schedule_name || "–"],
      ["stages", String((doc.stages || []).length)],
      ...(doc.edit ? [["edit", editSummary(doc.edit)]] : []),
      ["updated", fullTime(doc.updated_at)],
    ];
    clear(
      params,
      h(
        "div",
        { class: "kv-grid" },
        Object.entries(p).map(([k, v]) =>
          h(
            "div",
            { class: `kv${k in overrides ? " kv-override" : ""}`, "data-param": k },
            h("span", { class: "kv-key" }, k, k in overrides ? h("span", { class: "tag tag-accent" }, "override") : null, fixed.has(k) ? h("span", { class: "tag tag-fixed" }, "fixed") : null),
            h("span", { class: "kv-value mono" }, typeof v === "string" ? (v === "" ? "“”" : v) : JSON.stringify(v)),
          ),
        ),
      ),
      h("div", { class: "kv-grid kv-grid-meta" }, meta.map(([k, v]) => h("div", { class: "kv" }, h("span", { class: "kv-key" }, k), h("span", { class: "kv-value mono" }, v ?? "–")))),
    );
  }

  function renderJobs() {
    const jobs = sessionJobs(id, detail ? detail.children : []);
    const full = jobs.filter((j) => ACTIVE.has(j.state) || spawned.has(j.id)).slice(0, 4);
    const brief = jobs.filter((j) => !full.includes(j)).slice(0, 10);
    jobsPanel.hidden = !jobs.length;
    const cardsBefore = new Map([...jobsBox.querySelectorAll(".job-card")].map((c) => [Number(c.dataset.jobId), c]));
    const cards = full.map((j) => cardsBefore.get(j.id) || jobCard(j, { currentSession: id }));
    if (!(cards.length === jobsBox.children.length && cards.every((c, i) => jobsBox.children[i] === c))) clear(jobsBox, cards);
    jobsBox.hidden = !cards.length;
    const rowsBefore = new Map([...jobRows.querySelectorAll(".job-row")].map((r) => [Number(r.dataset.jobId), r]));
    const rows = brief.map((j) => rowsBefore.get(j.id) || jobRow(j, { currentSession: id }));
    if (!(rows.length === jobRows.children.length && rows.every((r, i) => jobRows.children[i] === r))) clear(jobRows, rows);
    jobRows.hidden = !rows.length;
  }

  // ---------------------------------------------------------------- actions
  // A tab for every operation of the registry (GET /api/operations) that acts on a
  // session and runs, and that this session's model takes (its `operations`). The
  // built-in ones keep forms of their own where those know what a schema cannot say (the
  // checkpointed steps a branch can start at, the region drawn on the video, the
  // session's blocks, the shipped schedules); each is bound to its operation's schema
  // (bounds, defaults, help, required), a field of the schema it does not know is added
  // from the schema, and only the schema's fields are sent. Any other operation (a
  // plugin's) gets a form built from its schema alone.
  function buildActions() {
    const ORDER = ["fork", "edit", "resume", "extend", "rewind", "hand-off"]; // then the registry's order
    const own = ownForms();
    let registry = loadedOperations();
    let registryError = null;
    const tabButtons = new Map();
    const panels = new Map(); // name -> <form>
    const tablist = h("div", { class: "tabs", role: "tablist", "data-testid": "action-tabs" });
    const noActions = h("p", { class: "muted action-help", "data-testid": "no-actions", hidden: true });
    const body = h("div", { class: "tab-body" }, noActions);
    const panel = h("section", { class: "panel", "data-testid": "session-actions" }, h("div", { class: "panel-head" }, h("h2", null, "Actions")), tablist, body);

    function fetchRegistry() {
      loadOperations().then(
        (ops) => {
          if (!alive) return;
          registry = ops;
          registryError = null;
          build();
          if (detail) update();
        },
        (err) => {
          if (!alive) return;
          registryError = err.message; // the next snapshot tries again
          if (detail) update();
        },
      );
    }

    /** The tabs and their forms, once the registry is known (it does not change while the server runs). */
    function build() {
      if (tabButtons.size || !registry) return;
      const rank = (n) => (ORDER.includes(n) ? ORDER.indexOf(n) : ORDER.length);
      const ops = [...registry.values()].filter((op) => op.on_session && op.runs).sort((a, b) => rank(a.name) - rank(b.name));
      for (const op of ops) {
        const b = h("button", { type: "button", role: "tab", class: "tab", "data-testid": `tab-${op.name}`, "aria-selected": "false", title: op.summary || null, hidden: true }, humanize(op.name));
        b.addEventListener("click", () => select(op.name));
        tabButtons.set(op.name, b);
        tablist.append(b);
        const form = operationForm(op, own[op.name] || null);
        panels.set(op.name, form);
        body.append(form);
      }
    }

    /** The form of one operation: its own (`spec`) with the schema's other fields, or the schema's alone. */
    function operationForm(op, spec) {
      const schema = op.schema || {};
      const props = schemaProps(schema);
      const extra = requestFields(schema, { idPrefix: `op-${op.name}`, skip: spec ? spec.handles : [] });
      const error = h("div", { class: "form-error", role: "alert", "data-testid": "action-error", hidden: true });
      const button = spec ? spec.submit : h("button", { type: "submit", class: "btn btn-primary", "data-testid": "op-submit" }, humanize(op.name));
      const form = h(
        "form",
        { class: "action-form", novalidate: true, hidden: true, "data-testid": `op-form-${op.name}`, "data-operation": op.name },
        spec ? spec.help : h("p", { class: "muted action-help", "data-testid": "op-summary" }, sentence(op.summary) || `Queue ${op.name} on this session.`),
        spec ? spec.body : null,
        extra.fields.length ? extra.el : null,
        error,
        h("div", { class: "form-actions" }, button),
      );
      if (spec) {
        bindOwnFields(form, props, new Set(schema.required || []));
        spec.bind(props);
      }

      let failed = null; // the field the error shown is about
      function fail(field, message, full) {
        error.textContent = full ?? (field ? `${field}: ${message}` : message);
        error.hidden = false;
        // Next to its field too: "mask.rect" is the mask's, "schedule.stages" the schedule's.
        const top = field ? String(field).split(".")[0] : null;
        failed = top;
        if (!top || extra.showError(top, message)) return;
        const box = [...form.querySelectorAll("[data-op-field]")].find((el) => el.dataset.opField.split(" ").includes(top) && el.querySelector(":scope > .field-error"));
        if (!box) return;
        box.classList.add("invalid");
        const msg = box.querySelector(":scope > .field-error");
        msg.textContent = message;
        msg.hidden = false;
      }

      function clearErrors() {
        failed = null;
        error.hidden = true;
        error.textContent = "";
        extra.clearErrors();
        for (const box of form.querySelectorAll("[data-op-field].invalid")) clearBox(box);
      }

      // Changing the field an error is about clears it (the schema's fields clear their own).
      const onChange = (e) => {
        const el = e.target.closest && e.target.closest("[data-op-field], [data-field]");
        if (!el || !failed) return;
        const names = (el.dataset.opField || el.dataset.field || "").split(" ");
        if (names.includes(failed)) clearErrors();
      };
      form.addEventListener("input", onChange);
      form.addEventListener("change", onChange);
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        clearErrors();
        const mine = spec ? spec.read() : { body: {} };
        if (mine.error) return fail(mine.error.field, mine.error.message);
        const got = extra.read();
        if (got.errors.length) return fail(got.errors[0].field, got.errors[0].message);
        // Only the schema's fields: the server refuses any other by name.
        const payload = Object.fromEntries(Object.entries({ ...mine.body, ...got.params }).filter(([k]) => k in props));
        button.disabled = true;
        try {
          const job = await api(`/api/sessions/${id}/${op.name}`, { method: "POST", body: payload });
          spawned.add(job.id);
          upsertJob(job);
          renderJobs();
        } catch (err) {
          fail(err.field, err.detail, err.message);
        } finally {
          button.disabled = false;
          if (detail) update(); // an own form may keep its button off (no step to branch at)
        }
      });
      return form;
    }

    /** The tabs this session's model takes (none while the registry or the model is unknown). */
    function offered() {
      const ops = registry && detail ? operationsOf(detail.model) : null;
      if (!ops) return [];
      const takes = new Set(ops);
      return [...tabButtons.keys()].filter((t) => takes.has(t));
    }

    function select(t) {
      tab = t ?? null;
      for (const [name, b] of tabButtons) b.setAttribute("aria-selected", name === tab ? "true" : "false");
      for (const [name, p] of panels) p.hidden = name !== tab;
      if (detail) setMode();
    }

    function update() {
      const shown = offered();
      for (const [name, b] of tabButtons) b.hidden = !shown.includes(name);
      select(shown.includes(tab) ? tab : shown[0]);
      const modelKnown = Boolean(capabilitiesOf(detail.model));
      let note = "";
      if (!modelKnown && state.models.length && !modelNamed(detail.model)) note = `${detail.model} is not installed on this server: no operation can run on this session.`;
      else if (registryError && !registry) note = `The operations could not be loaded: ${registryError}`;
      else if (!modelKnown || !registry) note = "Loading what this model can do…";
      else if (!shown.length) note = `${detail.model} takes no operation on a session.`;
      noActions.hidden = !note;
      setText(noActions, note);
      const first = !formsFilled;
      formsFilled = true;
      for (const spec of Object.values(own)) spec.update(first);
    }

    if (registry) build();
    else fetchRegistry();
    return { panel, update, showMask: own.edit.showMask, retry: () => registry || fetchRegistry() };
  }

  /** A field of an own form: `fields` names the schema fields it shows (space-separated),
   * so the schema can mark it required, give its help and hide it when it has none of them. */
  function box(fields, label, { hint = null, help = true, testid = null } = {}, ...controls) {
    return h(
      "div",
      { class: "field", "data-op-field": fields, "data-testid": testid },
      h("div", { class: "field-label" }, h("label", null, label), h("span", { class: "tag tag-required", title: "The request needs it", hidden: true }, "required"), hint),
      ...controls,
      help ? h("div", { class: "field-help", hidden: true }) : null,
      h("div", { class: "field-error", "data-testid": `field-error-${fields.split(" ")[0]}`, hidden: true }),
    );
  }

  function clearBox(el) {
    el.classList.remove("invalid");
    const msg = el.querySelector(":scope > .field-error");
    if (msg) {
      msg.hidden = true;
      msg.textContent = "";
    }
  }

  /** An own form's fields as its operation's schema has them: its descriptions as help,
   * its required ones marked, those it no longer has hidden (and never sent: the submit
   * keeps the schema's fields only). */
  function bindOwnFields(form, props, required) {
    for (const el of form.querySelectorAll("[data-op-field]")) {
      const known = el.dataset.opField.split(" ").filter((n) => n in props);
      el.classList.toggle("field-absent", !known.length);
      const text = known.map((n) => props[n].description).filter(Boolean).join(" · ");
      const help = el.querySelector(":scope > .field-help");
      if (help) {
        help.textContent = text;
        help.hidden = !text;
      } else if (text) el.title = text;
      const mark = el.querySelector(":scope > .field-label .tag-required");
      if (mark) mark.hidden = !known.some((n) => required.has(n));
    }
  }

  /** The steps a fork (or a hand-off, which is one) of this session can start at: checkpointed,
   * before the last step (it runs at least one), not before this session's own fork point
   * (before it, its state is its parent's), within the schema's bounds. */
  function branchSteps(prop) {
    const total = detail.total_steps;
    const from = detail.parent ? Number(detail.parent_step) || 0 : 0;
    const { min, max } = numberBounds(prop);
    return (detail.checkpoint_steps || []).filter((s) => s >= from && s < total && (min === null || s >= min) && (max === null || s <= max));
  }

  /** The drop-down (and slider) of the steps a branch can start at. */
  function stepPicker(prefix, what) {
    const range = h("input", { type: "range", min: "0", max: "0", step: "1", value: "0", "aria-label": `${what} step`, "data-testid": `${prefix}-step-range` });
    const select = h("select", { class: "num-sm", "data-testid": `${prefix}-step`, "aria-label": `${what} step` });
    const hint = h("span", { class: "field-hint", "data-testid": `${prefix}-step-hint` });
    range.addEventListener("input", () => {
      const opt = select.options[Number(range.value)];
      if (opt) select.value = opt.value;
    });
    select.addEventListener("change", () => (range.value = String(Math.max(0, select.selectedIndex))));
    let prop = {};
    /** Fill with the steps offered now; `wanted`: the step to pick (else the one picked), or the nearest. Gives how many. */
    function fill(wanted) {
      const steps = branchSteps(prop);
      const sig = steps.join(",");
      if (select.dataset.opts !== sig) {
        const keep = wanted ?? select.value;
        select.dataset.opts = sig;
        clear(select, steps.map((s) => h("option", { value: String(s) }, `step ${s}`)));
        const target = Number(keep);
        let best = steps.length ? steps[0] : null;
        for (const s of steps) if (Math.abs(s - target) < Math.abs(best - target)) best = s;
        if (best !== null) select.value = String(best);
      }
      range.max = String(Math.max(0, steps.length - 1));
      range.value = String(Math.max(0, select.selectedIndex));
      range.disabled = select.disabled = !steps.length;
      setText(hint, steps.length ? `${steps.length} checkpointed step${steps.length === 1 ? "" : "s"} · ${steps[0]} … ${steps[steps.length - 1]}` : "no checkpoint to fork from");
      return steps.length;
    }
    function read() {
      const step = select.value === "" ? NaN : Number(select.value);
      return Number.isInteger(step) ? { body: { step } } : { error: { field: "step", message: "this session has no checkpoint a fork can start at" } };
    }
    return { row: h("div", { class: "range-row" }, range, select), hint, fill, read, bind: (p) => (prop = p || {}) };
  }

  /** JSON text (blank: {}), as an object, else an error for `field`. */
  function jsonObject(text, field) {
    if (!text.trim()) return { value: {} };
    let value;
    try {
      value = JSON.parse(text);
    } catch {
      return { error: { field, message: "not valid JSON" } };
    }
    if (!value || typeof value !== "object" || Array.isArray(value)) return { error: { field, message: "enter a JSON object" } };
    return { value };
  }

  /** The built-in operations' own forms, by operation: each {help, body, submit, handles
   * (the schema fields it shows), bind(props) (the schema's bounds and defaults), update(first)
   * (what the session allows), read() ({body} or {error: {field, message}})}. */
  function ownForms() {
    const prompt0 = () => (detail.doc.params.prompt ?? "");

    // Fork
    const forkPicker = stepPicker("fork", "Fork");
    const forkPrompt = h("textarea", { rows: 3, "data-testid": "fork-prompt", placeholder: "The branch's prompt" });
    const forkExtra = h("textarea", { rows: 2, class: "mono", "data-testid": "fork-overrides", placeholder: '{"seed": 7, "guidance": 3}' });
    const forkSubmit = h("button", { type: "submit", class: "btn btn-primary", "data-testid": "fork-submit" }, "Fork");
    let forkProps = {};
    const fork = {
      handles: ["step", "overrides"],
      help: h("p", { class: "muted action-help" }, "Branch a new session from a step of this one. The steps before it are reused; the rest run with the new prompt."),
      body: [
        box("step", "From step", { hint: forkPicker.hint }, forkPicker.row),
        box("overrides", "Prompt", { help: false }, forkPrompt),
        h("details", { class: "advanced", "data-op-field": "overrides" }, h("summary", null, "More overrides (JSON)"), forkExtra),
      ],
      submit: forkSubmit,
      bind(props) {
        forkProps = props;
        forkPicker.bind(props.step);
      },
      update(first) {
        forkSubmit.disabled = !forkPicker.fill(first ? Math.floor(detail.total_steps / 2) : undefined);
        if (first) forkPrompt.value = prompt0();
      },
      read() {
        const body = {};
        if ("overrides" in forkProps) {
          const extra = jsonObject(forkExtra.value, "overrides");
          if (extra.error) return extra;
          body.overrides = { ...extra.value };
          if (forkPrompt.value !== prompt0()) body.overrides.prompt = forkPrompt.value;
        }
        if (!("step" in forkProps)) return { body };
        const step = forkPicker.read();
        return step.error ? step : { body: { ...step.body, ...body } };
      },
    };

    // Edit
    const maskReadout = h("span", { class: "mask-readout", "data-testid": "mask-readout" });
    const maskClear = h("button", { type: "button", class: "btn btn-sm btn-ghost", "data-testid": "mask-clear" }, "Clear");
    maskClear.addEventListener("click", () => {
      mask = null;
      showMask();
      drawMask();
    });
    const frameStart = h("input", { type: "number", min: "0", step: "1", placeholder: "0", class: "num-sm", "data-testid": "mask-frame-start", "aria-label": "First frame" });
    const frameEnd = h("input", { type: "number", min: "1", step: "1", placeholder: "all", class: "num-sm", "data-testid": "mask-frame-end", "aria-label": "End frame (exclusive)" });
    const modeStrength = h("input", { type: "radio", name: `edit-mode-${id}`, value: "strength", checked: true, "data-testid": "edit-mode-strength" });
    const modeStep = h("input", { type: "radio", name: `edit-mode-${id}`, value: "step", "data-testid": "edit-mode-step" });
    // The schema gives no default strength: half the steps again.
    const strength = h("input", { type: "range", min: "0.05", max: "1", step: "0.05", value: "0.5", "data-testid": "edit-strength", "aria-label": "Strength" });
    const strengthOut = h("span", { class: "mono num-out" }, "0.50");
    const showStrength = () => setText(strengthOut, Number(strength.value).toFixed(2));
    strength.addEventListener("input", showStrength);
    const editStep = h("input", { type: "number", min: "0", step: "1", value: "0", class: "num-sm", "data-testid": "edit-step", disabled: true });
    const syncMode = () => {
      strength.disabled = !modeStrength.checked;
      editStep.disabled = !modeStep.checked;
    };
    modeStrength.addEventListener("change", syncMode);
    modeStep.addEventListener("change", syncMode);
    const editPrompt = h("textarea", { rows: 3, "data-testid": "edit-prompt", placeholder: "What the region should show" });
    const editHelp = h("p", { class: "muted action-help", "data-testid": "edit-help" });
    const maskRow = h("div", { class: "mask-row", "data-testid": "mask-row", "data-op-field": "mask" }, h("span", { class: "mask-icon" }), maskReadout, maskClear);
    const maskFrames = box("mask", "Frames", { hint: h("span", { class: "field-hint" }, "first … end (exclusive)"), help: false, testid: "mask-frames" }, h("div", { class: "range-row" }, frameStart, h("span", { class: "muted" }, "to"), frameEnd));
    const editSubmit = h("button", { type: "submit", class: "btn btn-primary", "data-testid": "edit-submit" }, "Edit region");
    let editProps = {};
    const showMask = () => {
      if (mask) setText(maskReadout, `x ${mask.x0}–${mask.x1}, y ${mask.y0}–${mask.y1} (${mask.x1 - mask.x0}×${mask.y1 - mask.y0} px)`);
      else setText(maskReadout, "No region drawn: the whole frame");
      maskReadout.dataset.rect = mask ? [mask.x0, mask.y0, mask.x1, mask.y1].join(",") : "";
      maskClear.hidden = !mask;
    };
    const edit = {
      handles: ["step", "strength", "overrides", "mask"],
      help: editHelp,
      body: [
        maskRow,
        maskFrames,
        box(
          "strength step",
          "Re-denoise",
          { help: false },
          h("label", { class: "radio-row", "data-op-field": "strength" }, modeStrength, h("span", null, "Strength"), strength, strengthOut),
          h("label", { class: "radio-row", "data-op-field": "step" }, modeStep, h("span", null, "From step"), editStep),
        ),
        box("overrides", "Prompt", { help: false }, editPrompt),
      ],
      submit: editSubmit,
      showMask,
      bind(props) {
        editProps = props;
        const { min, max } = numberBounds(props.strength, Number(strength.step));
        if (min !== null) strength.min = String(min);
        if (max !== null) strength.max = String(max);
        if (typeof props.strength?.default === "number") strength.value = String(props.strength.default);
        showStrength();
        // Only one way is there: it is the one used.
        if (!("strength" in props) && "step" in props) {
          modeStep.checked = true;
          syncMode();
        }
      },
      update(first) {
        const total = detail.total_steps;
        const passList = (detail.doc && detail.doc.passes) || [];
        // An edit re-runs part of the last pass (the one at the video's size).
        const { min, max } = numberBounds(editProps.step);
        editStep.min = String(Math.max(min ?? 0, passList.slice(0, -1).reduce((a, b) => a + b, 0)));
        editStep.max = String(Math.min(max ?? Infinity, Math.max(0, total - 1)));
        const frames = Number(detail.doc.params.num_frames) || 1;
        frameStart.max = String(frames - 1);
        frameEnd.max = String(frames);
        const takesMask = masking();
        maskRow.hidden = maskFrames.hidden = !takesMask;
        setText(editSubmit, takesMask ? "Edit region" : "Edit video");
        editPrompt.placeholder = takesMask ? "What the region should show" : "What the video should show";
        setText(
          editHelp,
          takesMask
            ? "Drag on the video to mark the region to re-denoise; outside it the video is kept exactly. No region: the whole frame."
            : "Re-denoise the whole video from a step, under a new prompt if you give one (this model takes no mask).",
        );
        if (first) {
          editStep.value = String(Math.max(Math.floor(total / 2), Number(editStep.min)));
          editPrompt.value = prompt0();
        }
        showMask();
      },
      read() {
        const body = {};
        if (modeStrength.checked && "strength" in editProps) body.strength = Number(strength.value);
        else if ("step" in editProps) {
          const step = Number(editStep.value);
          if (editStep.value.trim() === "" || !Number.isInteger(step)) return { error: { field: "step", message: "enter a whole number" } };
          body.step = step;
        }
        if (editPrompt.value !== prompt0()) body.overrides = { prompt: editPrompt.value };
        const m = {};
        if (mask && masking()) m.rect = [mask.x0, mask.y0, mask.x1, mask.y1];
        const a = frameStart.value.trim();
        const b = frameEnd.value.trim();
        if (masking() && (a !== "" || b !== "")) {
          const nf = Number(detail.doc.params.num_frames) || 1;
          m.frames = [a === "" ? 0 : Number(a), b === "" ? nf : Number(b)];
        }
        if (Object.keys(m).length) body.mask = m;
        return { body };
      },
    };

    // Resume
    const until = h("input", { type: "number", min: "0", step: "1", placeholder: "the end", class: "num-sm", "data-testid": "resume-until" });
    const resumeNote = h("p", { class: "muted action-help", "data-testid": "resume-note" });
    const resume = {
      handles: ["until"],
      help: resumeNote,
      body: [box("until", "Stop at step", { hint: h("span", { class: "field-hint" }, "optional") }, until)],
      submit: h("button", { type: "submit", class: "btn btn-primary", "data-testid": "resume-submit" }, "Resume"),
      bind(props) {
        const { min, max } = numberBounds(props.until);
        until.min = min === null ? "" : String(min);
        until.max = max === null ? "" : String(max);
      },
      update() {
        setText(
          resumeNote,
          detail.status === "completed"
            ? "This session is complete: resuming has nothing left to run. Fork it to branch instead."
            : `Continue denoising from step ${detail.step} of ${detail.total_steps} (the session is ${detail.status}).`,
        );
      },
      read() {
        return { body: until.value.trim() === "" ? {} : { until: Number(until.value) } };
      },
    };

    // Extend (autoregressive models): more blocks at the end.
    const blocks = h("input", { type: "number", step: "1", class: "num-sm", "data-testid": "extend-blocks" });
    const extendPrompt = h("textarea", { rows: 2, "data-testid": "extend-prompt", placeholder: "Prompt of the new blocks (optional)" });
    // The new blocks' per-chunk inputs (a world model's actions): a path on the server or a JSON array each.
    const extendInputs = h("div", { class: "schema-fields", "data-testid": "extend-inputs" });
    let extendInputsOf = null; // the model the input fields were made for
    const chunkInputs = {};
    const extend = {
      handles: ["blocks", "prompt", "inputs"],
      help: h("p", { class: "muted action-help" }, "Add blocks to the end of the video (autoregressive models)."),
      body: [box("blocks", "Blocks", {}, blocks), box("prompt", "Prompt", {}, extendPrompt), extendInputs],
      submit: h("button", { type: "submit", class: "btn btn-primary", "data-testid": "extend-submit" }, "Extend"),
      bind(props) {
        const { min, max } = numberBounds(props.blocks);
        blocks.min = min === null ? "" : String(min);
        blocks.max = max === null ? "" : String(max);
        blocks.value = props.blocks?.default === undefined ? "" : String(props.blocks.default);
      },
      update() {
        const model = state.models.find((m) => m.name === detail.model) || null; // null until the models load
        if (extendInputsOf === model) return;
        extendInputsOf = model;
        const specs = ((model || {}).inputs || []).filter((i) => i.per_chunk);
        for (const name of Object.keys(chunkInputs)) delete chunkInputs[name];
        clear(
          extendInputs,
          specs.map((spec) => {
            const control = h("input", {
              type: "text",
              "data-testid": `extend-input-${spec.name}`,
              placeholder: `${spec.per_chunk} rows per new block: a path on the server, or a JSON array`,
            });
            chunkInputs[spec.name] = control;
            const label = `${spec.name}${spec.required ? " (required)" : ""}`;
            return box("inputs", label, { help: false, testid: `extend-field-${spec.name}` }, control);
          }),
        );
      },
      read() {
        const body = {};
        if (blocks.value.trim() !== "") body.blocks = Number(blocks.value); // blank: the schema's default
        if (extendPrompt.value.trim()) body.prompt = extendPrompt.value;
        const { inputs, error } = readInputs(chunkInputs);
        if (error) return { error };
        if (Object.keys(inputs).length) body.inputs = inputs;
        return { body };
      },
    };

    // Rewind (autoregressive models): make the blocks from one on again.
    const rewindBlock = h("input", { type: "number", min: "0", max: "0", step: "1", value: "0", class: "num-sm", "data-testid": "rewind-block" });
    const rewindHint = h("span", { class: "field-hint", "data-testid": "rewind-block-hint" });
    const rewindPrompt = h("textarea", { rows: 2, "data-testid": "rewind-prompt", placeholder: "Prompt from that block on (optional: as before)" });
    let rewindProps = {};
    const rewind = {
      handles: ["block", "prompt"],
      help: h("p", { class: "muted action-help" }, "A new session that keeps the blocks before this one and makes the rest again, under a new prompt if you give one."),
      body: [box("block", "From block", { hint: rewindHint }, rewindBlock), box("prompt", "Prompt", {}, rewindPrompt)],
      submit: h("button", { type: "submit", class: "btn btn-primary", "data-testid": "rewind-submit" }, "Rewind"),
      bind(props) {
        rewindProps = props;
      },
      update(first) {
        const passes = ((detail.doc && detail.doc.passes) || []).length || 1;
        const { min, max } = numberBounds(rewindProps.block);
        rewindBlock.min = String(min ?? 0);
        rewindBlock.max = String(Math.min(max ?? Infinity, passes - 1));
        setText(rewindHint, `0 … ${passes - 1} of ${passes} blocks`);
        if (first) rewindBlock.value = String(passes - 1);
      },
      read() {
        const body = {};
        if ("block" in rewindProps) {
          const block = rewindBlock.value.trim() === "" ? NaN : Number(rewindBlock.value);
          if (!Number.isInteger(block)) return { error: { field: "block", message: "enter a whole number" } };
          body.block = block;
        }
        if (rewindPrompt.value.trim()) body.prompt = rewindPrompt.value;
        return { body };
      },
    };

    // Hand-off: a fork whose steps from there on run under a hybrid schedule (other stage
    // models): a shipped one by name, or a config written here as JSON.
    const handPicker = stepPicker("hand-off", "Hand-off");
    const CUSTOM = "custom";
    const schedule = h("select", { "data-testid": "hand-off-schedule", "aria-label": "Schedule" }, h("option", { value: CUSTOM }, "Custom config (JSON)"));
    const scheduleJson = h("textarea", { rows: 4, class: "mono", "data-testid": "hand-off-schedule-json" });
    const syncSchedule = () => (scheduleJson.hidden = schedule.value !== CUSTOM);
    schedule.addEventListener("change", syncSchedule);
    const handSubmit = h("button", { type: "submit", class: "btn btn-primary", "data-testid": "hand-off-submit" }, "Hand off");
    let handProps = {};
    const handOff = {
      handles: ["step", "schedule"],
      help: h(
        "p",
        { class: "muted action-help" },
        "Branch at a step, as a fork does, and give the steps from there to other stage models. The steps before it are this session's history: the schedule must run them as they ran.",
      ),
      body: [box("step", "From step", { hint: handPicker.hint }, handPicker.row), box("schedule", "Schedule", {}, schedule, scheduleJson)],
      submit: handSubmit,
      bind(props) {
        handProps = props;
        handPicker.bind(props.step);
        syncSchedule();
        loadSchedules().then(
          (names) => {
            if (!alive || !names.length) return;
            clear(schedule, names.map((n) => h("option", { value: `name:${n}` }, n)), h("option", { value: CUSTOM }, "Custom config (JSON)"));
            schedule.value = `name:${names[0]}`;
            syncSchedule();
          },
          () => {}, // a config can still be written by hand
        );
      },
      update(first) {
        handSubmit.disabled = !handPicker.fill(first ? Math.floor(detail.total_steps / 2) : undefined);
        const m = JSON.stringify(detail.model);
        scheduleJson.placeholder = `{"stages": [{"model": ${m}}, {"model": ${m}, "guidance": 3}], "boundary": 0.5}`;
      },
      read() {
        const body = {};
        if ("step" in handProps) {
          const step = handPicker.read();
          if (step.error) return step;
          body.step = step.body.step;
        }
        if (schedule.value !== CUSTOM) body.schedule = schedule.value.slice("name:".length);
        else {
          if (!scheduleJson.value.trim()) return { error: { field: "schedule", message: "write a schedule config, or pick a shipped schedule" } };
          const config = jsonObject(scheduleJson.value, "schedule");
          if (config.error) return config;
          body.schedule = config.value;
        }
        return { body };
      },
    };

    return { fork, edit, resume, extend, rewind, "hand-off": handOff };
  }

  // ---------------------------------------------------------------- events
  load();
  const stopTimers = startJobTimers();
  const off = listen((ev) => {
    if (ev.type === "snapshot") {
      actions.retry(); // the registry, if it could not be fetched before
      reload();
    } else if (ev.type === "models" && detail) {
      actions.update(); // the tabs follow the operations the model takes
      renderStage();
    }
    else if (ev.type === "job") {
      const j = ev.job;
      const related = (j.payload && j.payload.session === id) || j.session_id === id || (detail && (detail.children || []).includes(j.session_id));
      if (!related) return;
      if (detail) {
        renderJobs();
        renderHead();
      }
      if (ev.prev !== j.state) reload();
    } else if (ev.type === "spawned" && detail) {
      spawned.add(ev.job.id);
      renderJobs();
    } else if (ev.type === "preview" && ev.session_id === id && detail && !detail.video) renderStage();
    else if (ev.type === "session" && (ev.id === id || (detail && (detail.children || []).includes(ev.id)))) reload();
  });
  return () => {
    alive = false;
    extensions?.unmount();
    reload.cancel();
    resizer.disconnect();
    stopTimers();
    off();
  };
}

function editSummary(e) {
  const parts = [`from step ${e.start_step}`];
  if (e.rect) parts.push(`region ${e.rect[0]},${e.rect[1]} → ${e.rect[2]},${e.rect[3]}`);
  if (e.frames) parts.push(`frames ${e.frames[0]}–${e.frames[1]}`);
  if (e.coverage !== undefined && e.coverage < 1) parts.push(`${Math.round(e.coverage * 100)}% covered`);
  return parts.join(" · ");
}

function summarizeSteps(steps) {
  if (!steps.length) return "none";
  const out = [];
  let start = steps[0];
  let prev = steps[0];
  for (const s of steps.slice(1).concat([null])) {
    if (s !== null && s === prev + 1) {
      prev = s;
      continue;
    }
    out.push(start === prev ? `${start}` : `${start}–${prev}`);
    start = prev = s;
  }
  return out.join(", ");
}
