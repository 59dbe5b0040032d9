// The device dashboard: memory and utilization of every device, the models warm on it,
// the model cache's state and its recent activity.

import { badge, clear, fmtBytes, fmtDuration, h, listen, setText, state } from "./core.js";
import { modelStatePill } from "./models.js";

function meter(used, total, testid, label) {
  const frac = total ? Math.min(1, used / total) : 0;
  const level = frac > 0.9 ? "high" : frac > 0.7 ? "mid" : "low";
  return h(
    "div",
    {
      class: `meter meter-${level}`,
      role: "meter",
      "aria-label": label,
      "aria-valuemin": "0",
      "aria-valuemax": String(total),
      "aria-valuenow": String(used),
      "data-testid": testid,
    },
    h("div", { class: "meter-fill", style: { width: `${(frac * 100).toFixed(1)}%` } }),
  );
}

function variantState(label) {
  const [name, variant] = label.split("/");
  const model = state.models.find((m) => m.name === name);
  return model && (model.states || []).find((s) => s.variant === variant);
}

function gpuCard(d) {
  const used = d.memory_used ?? 0;
  const total = d.memory_total ?? 0;
  const pct = total ? Math.round((used / total) * 100) : 0;
  return h(
    "section",
    { class: "panel gpu-card", "data-testid": "gpu-card", "data-device": d.id },
    h(
      "div",
      { class: "gpu-head" },
      h("div", null, h("h3", { "data-testid": "gpu-name" }, d.name || d.id), h("div", { class: "muted mono gpu-sub" }, d.uuid ? `${d.id} · ${d.uuid.slice(0, 13)}…` : d.id)),
      h("span", { class: `tag tag-${d.kind}` }, d.kind === "cpu" ? "CPU" : d.kind.toUpperCase()),
    ),
    h(
      "div",
      { class: "gpu-stat" },
      h("div", { class: "stat-label" }, h("span", null, d.kind === "cpu" ? "System memory" : "Memory"), h("span", { class: "mono" }, `${pct}%`)),
      meter(used, total, "gpu-memory-bar", "memory used"),
      h("div", { class: "stat-foot muted", "data-testid": "gpu-memory-text" }, `${fmtBytes(used)} used of ${fmtBytes(total)} · ${fmtBytes(d.memory_free)} free`),
    ),
    h(
      "div",
      { class: "gpu-stat" },
      h("div", { class: "stat-label" }, h("span", null, "Utilization"), h("span", { class: "mono" }, d.utilization === null || d.utilization === undefined ? "n/a" : `${d.utilization}%`)),
      d.utilization === null || d.utilization === undefined
        ? h("div", { class: "stat-foot muted" }, d.kind === "cpu" ? "Not measured on the CPU." : "Not reported by the driver.")
        : meter(d.utilization, 100, "gpu-util-bar", "utilization"),
    ),
    h(
      "div",
      { class: "gpu-stat" },
      h("div", { class: "stat-label" }, h("span", null, "Models here"), h("span", { class: "mono" }, String((d.models || []).length))),
      h(
        "div",
        { class: "chips", "data-testid": "gpu-models" },
        (d.models || []).length
          ? d.models.map((label) =>
              h("span", { class: "chip", "data-testid": "gpu-model", "data-label": label }, h("span", { class: "mono" }, label), modelStatePill(null, variantState(label) || { state: "warm" }, { showDevice: false })),
            )
          : h("span", { class: "muted" }, "No model loaded."),
      ),
    ),
    (d.processes || []).length
      ? h(
          "div",
          { class: "gpu-stat" },
          h("div", { class: "stat-label" }, h("span", null, "Processes")),
          h(
            "table",
            { class: "table table-compact" },
            h("thead", null, h("tr", null, h("th", null, "PID"), h("th", null, "Memory"))),
            h(
              "tbody",
              null,
              d.processes.map((p) => h("tr", null, h("td", { class: "mono" }, String(p.pid)), h("td", { class: "mono" }, p.used_bytes === null ? "–" : fmtBytes(p.used_bytes)))),
            ),
          ),
        )
      : null,
  );
}

export function mountGpus(root) {
  const grid = h("div", { class: "gpu-grid", "data-testid": "gpu-grid" });
  const updated = h("span", { class: "muted", "data-testid": "gpus-updated" });
  const cache = h("div", { "data-testid": "cache-table" });
  const activity = h("ul", { class: "activity", "data-testid": "model-events" });
  clear(
    root,
    h(
      "div",
      { class: "page" },
      h("div", { class: "page-head" }, h("div", null, h("h1", null, "Devices"), updated)),
      grid,
      h(
        "div",
        { class: "two-col" },
        h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", null, "Model cache")), cache),
        h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", null, "Cache activity")), activity),
      ),
    ),
  );

  function renderDevices() {
    clear(grid, state.gpus.length ? state.gpus.map(gpuCard) : h("div", { class: "empty" }, "No device reported yet."));
  }

  function renderCache() {
    const rows = [];
    for (const m of state.models) for (const s of m.states || []) rows.push({ label: `${m.name}/${s.variant}`, s });
    clear(
      cache,
      rows.length
        ? h(
            "table",
            { class: "table" },
            h("thead", null, h("tr", null, h("th", null, "Model"), h("th", null, "State"), h("th", null, "Device"))),
            h(
              "tbody",
              null,
              rows.map((r) =>
                h("tr", { "data-testid": "cache-row", "data-label": r.label }, h("td", { class: "mono" }, r.label), h("td", null, modelStatePill(null, r.s, { showDevice: false })), h("td", { class: "mono" }, r.s.device || "–")),
              ),
            ),
          )
        : h("div", { class: "empty" }, "No models installed."),
    );
  }

  function renderActivity() {
    const events = state.modelEvents.slice(0, 30);
    clear(
      activity,
      events.length
        ? events.map((e) =>
            h(
              "li",
              { "data-testid": "model-event" },
              h("span", { class: "mono muted" }, new Date(e.time * 1000).toLocaleTimeString()),
              badge(e.kind, `ev-${e.kind}`),
              h("span", { class: "mono" }, e.label),
              h("span", { class: "muted" }, [e.device ? `on ${e.device}` : "", e.bytes ? fmtBytes(e.bytes) : "", e.seconds ? fmtDuration(e.seconds) : ""].filter(Boolean).join(" · ")),
            ),
          )
        : h("li", { class: "muted" }, "Loads, evictions, offloads and moves show here as they happen (since this page opened)."),
    );
  }

  function tick() {
    setText(updated, state.gpusAt ? `updated ${Math.max(0, Math.round((Date.now() - state.gpusAt) / 1000))}s ago` : "");
  }

  renderDevices();
  renderCache();
  renderActivity();
  tick();
  const ticker = setInterval(tick, 1000);
  const off = listen((ev) => {
    if (ev.type === "gpus" || ev.type === "snapshot") {
      renderDevices();
      tick();
    }
    if (ev.type === "models" || ev.type === "snapshot") {
      renderCache();
      renderDevices();
    }
    if (ev.type === "model" || ev.type === "snapshot") renderActivity();
  });
  return () => {
    clearInterval(ticker);
    off();
  };
}
