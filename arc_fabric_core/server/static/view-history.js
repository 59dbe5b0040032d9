// The history grid: every session, newest first, with its video and status.

import { TOKEN, api, apiUrl, badge, clear, debounce, fullTime, h, listen, relTime, setMediaSrc, setText, shortId, state, truncate } from "./core.js";

/** A muted looping video showing its first frame, playing on hover. */
export function thumbVideo(path, testid) {
  const video = h("video", { class: "thumb-video", muted: true, loop: true, playsinline: true, preload: "metadata", "data-testid": testid });
  if (TOKEN) setMediaSrc(video, path);
  else {
    video.src = `${apiUrl(path)}#t=0.05`;
    video.dataset.path = path;
  }
  return video;
}

function runningJob(sessionId) {
  for (const j of state.jobs.values()) if (j.session_id === sessionId && (j.state === "running" || j.state === "queued")) return j;
  return null;
}

function historyCard(s) {
  const thumb = h("div", { class: "thumb" });
  if (s.video) thumb.append(thumbVideo(s.video, "history-video"));
  else thumb.append(h("div", { class: "thumb-empty" }, s.status === "running" ? "rendering…" : `no video · ${s.status}`));
  if (s.operation && s.operation !== "create") {
    thumb.append(h("span", { class: "thumb-tag" }, `${s.operation}${s.parent_step !== null ? ` @ ${s.parent_step}` : ""}`));
  }
  thumb.append(h("div", { class: "thumb-progress", hidden: true }, h("div", { class: "thumb-progress-fill" })));
  const card = h(
    "a",
    { class: "history-card", href: `#/session/${s.id}`, "data-testid": "history-card", "data-session-id": s.id, title: s.error || s.prompt || s.id },
    thumb,
    h(
      "div",
      { class: "card-body" },
      // A damaged session (its session.json unreadable) shows why, and how to repair it.
      s.status === "damaged"
        ? h("p", { class: "card-prompt muted", "data-testid": "history-damaged" }, truncate(s.error || "damaged", 240))
        : h("p", { class: `card-prompt${s.prompt ? "" : " muted"}` }, s.prompt ? truncate(s.prompt, 140) : "(no prompt)"),
      h(
        "div",
        { class: "card-meta" },
        badge(s.status, s.status, { "data-testid": "history-status" }),
        s.status === "damaged" ? null : h("span", { class: "muted" }, `${s.step}/${s.total_steps} steps`),
        s.parent ? h("span", { class: "muted card-parent", title: s.parent }, `← ${shortId(s.parent)}`) : null,
      ),
      h(
        "div",
        { class: "card-meta card-meta-foot" },
        h("span", { class: "mono muted", title: s.id }, s.model ? `${s.model}/${s.variant}` : shortId(s.id)),
        h("span", { class: "muted card-time", title: `${s.id}\n${fullTime(s.created_at)}` }, relTime(s.created_at)),
      ),
    ),
  );
  const video = thumb.querySelector("video");
  if (video) {
    card.addEventListener("mouseenter", () => video.play().catch(() => {}));
    card.addEventListener("mouseleave", () => video.pause());
  }
  return card;
}

export function mountHistory(root) {
  const grid = h("div", { class: "history-grid", "data-testid": "history-grid" });
  const count = h("span", { class: "muted", "data-testid": "history-count" });
  const search = h("input", { type: "search", placeholder: "Filter: prompt, model, id…", class: "search", "data-testid": "history-search" });
  const refresh = h("button", { type: "button", class: "btn", "data-testid": "history-refresh" }, "Refresh");
  const error = h("div", { class: "form-error", role: "alert", hidden: true });
  clear(
    root,
    h(
      "div",
      { class: "page" },
      h("div", { class: "page-head" }, h("div", null, h("h1", null, "History"), count), h("div", { class: "page-tools" }, search, refresh)),
      error,
      grid,
    ),
  );
  let sessions = null;
  let alive = true;

  async function load() {
    try {
      const got = await api("/api/sessions?limit=500");
      if (!alive) return;
      sessions = got;
      error.hidden = true;
      render();
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    }
  }

  function render() {
    if (!sessions) {
      clear(grid, h("div", { class: "empty" }, "Loading…"));
      return;
    }
    const q = search.value.trim().toLowerCase();
    const shown = sessions.filter(
      (s) => !q || [s.prompt, s.model, s.variant, s.id, s.status].some((v) => String(v || "").toLowerCase().includes(q)),
    );
    setText(count, q ? `${shown.length} of ${sessions.length} sessions` : `${sessions.length} session${sessions.length === 1 ? "" : "s"}`);
    if (!shown.length) {
      clear(
        grid,
        h(
          "div",
          { class: "empty" },
          sessions.length ? "Nothing matches the filter." : h("span", null, "No sessions yet. ", h("a", { href: "#/" }, "Generate one.")),
        ),
      );
      return;
    }
    const existing = new Map([...grid.querySelectorAll(".history-card")].map((c) => [c.dataset.sessionId, c]));
    const cards = shown.map((s) => {
      const sig = JSON.stringify([s.status, s.step, s.video]);
      const old = existing.get(s.id);
      if (old && old.dataset.sig === sig) return old;
      const card = historyCard(s);
      card.dataset.sig = sig;
      return card;
    });
    clear(grid, cards);
    updateProgress();
  }

  function updateProgress() {
    for (const card of grid.querySelectorAll(".history-card")) {
      const job = runningJob(card.dataset.sessionId);
      const bar = card.querySelector(".thumb-progress");
      const p = job && job.progress;
      bar.hidden = !p;
      if (p) bar.firstChild.style.width = `${((p.step / p.total) * 100).toFixed(1)}%`;
    }
  }

  const reload = debounce(load, 300);
  search.addEventListener("input", render);
  refresh.addEventListener("click", load);
  render();
  load();
  const off = listen((ev) => {
    if (ev.type === "snapshot" || ev.type === "session") reload();
    else if (ev.type === "job") {
      if (ev.job.session_id && ev.prev !== ev.job.state) reload();
    } else if (ev.type === "progress") updateProgress();
  });
  const ticker = setInterval(() => {
    for (const el of grid.querySelectorAll(".card-time")) {
      const s = sessions && sessions.find((x) => x.id === el.closest(".history-card").dataset.sessionId);
      if (s) setText(el, relTime(s.created_at));
    }
  }, 10000);
  return () => {
    alive = false;
    reload.cancel();
    clearInterval(ticker);
    off();
  };
}
