// The generate page: model cards, the parameter form, the live output, the job list.

import { api, clear, h, listen, setText, state } from "./core.js";
import { mountExtensions } from "./extensions.js";
import { readInputs, schemaFields } from "./form.js";
import { jobCard, jobRow, startJobTimers, upsertJob } from "./jobs.js";
import { capabilityTags, deviceLabel, modelStatePill } from "./models.js";

// What the page keeps while it is left: the job shown, the model picked (read when first shown), each model's form.
const ui = { activeJobId: null, model: undefined, keep: new Map() };

function modelCard(model, selected, onSelect) {
  const states = model.states || [];
  const latent = model.latent_space || {};
  const card = h(
    "div",
    {
      class: `model-card${selected ? " selected" : ""}`,
      role: "button",
      tabindex: "0",
      "aria-pressed": selected ? "true" : "false",
      "data-testid": "model-card",
      "data-model": model.name,
    },
    h("div", { class: "model-card-head" }, h("h3", null, model.name), states.length <= 1 ? modelStatePill(model, states[0]) : null),
    h("p", { class: "model-desc" }, model.description || ""),
    states.length > 1
      ? h(
          "ul",
          { class: "variant-states" },
          states.map((s) => h("li", null, h("span", { class: "mono" }, s.variant), modelStatePill(model, s))),
        )
      : null,
    h(
      "div",
      { class: "model-meta" },
      (model.variants || []).map((v) =>
        h("span", { class: "tag", title: v.description || "" }, v.name, v.tiny ? h("span", { class: "tag-sub" }, " tiny") : null),
      ),
      latent.family
        ? h(
            "span",
            { class: "tag tag-quiet", title: "latent space" },
            `${latent.family} · ${latent.channels}ch · ÷${latent.spatial_compression}/${latent.temporal_compression}`,
          )
        : null,
    ),
    h("div", { class: "model-meta model-caps", "data-testid": "model-capabilities" }, capabilityTags(model)),
  );
  card.addEventListener("click", () => onSelect(model.name));
  card.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      onSelect(model.name);
    }
  });
  return card;
}

export function mountGenerate(root) {
  if (ui.model === undefined) ui.model = localStorage.getItem("arc.model") || null;
  const modelGrid = h("div", { class: "model-grid", "data-testid": "model-list" });
  const modelCount = h("span", { class: "muted" });
  const formPanel = h("section", { class: "panel panel-form", "data-testid": "generate-panel" });
  const outputBody = h("div", { class: "output-body" });
  const outputPanel = h(
    "section",
    { class: "panel panel-output", "data-testid": "output" },
    h("div", { class: "panel-head" }, h("h2", null, "Output")),
    outputBody,
  );
  const jobList = h("div", { class: "job-list", "data-testid": "job-list" });
  const jobCount = h("span", { class: "muted" });
  clear(
    root,
    h(
      "div",
      { class: "page page-generate" },
      h(
        "section",
        { class: "section" },
        h("div", { class: "section-head" }, h("h2", null, "Models"), modelCount),
        modelGrid,
      ),
      h("div", { class: "workspace" }, formPanel, outputPanel),
      h(
        "section",
        { class: "panel panel-jobs" },
        h("div", { class: "panel-head" }, h("h2", null, "Jobs"), jobCount),
        jobList,
      ),
    ),
  );

  let form = null; // {model, fields, ...}
  let extensions = null; // the plugins' panels of the model picked (extensions.js)

  function select(name) {
    if (form && form.model.name === name) return;
    ui.model = name;
    localStorage.setItem("arc.model", name);
    renderModels();
    renderForm();
  }

  function renderModels() {
    const models = state.models;
    setText(modelCount, models.length === 1 ? "1 installed" : `${models.length} installed`);
    if (!models.length) {
      clear(modelGrid, h("div", { class: "empty" }, modelsPlaceholder()));
      return;
    }
    if (!ui.model || !models.some((m) => m.name === ui.model)) ui.model = models[0].name;
    // Cards are replaced only when what they show changed: a click never lands on a stale one.
    const sigOf = (m) => JSON.stringify([m.states, (m.states || []).map((s) => s.device && deviceLabel(s.device)), m.capabilities]);
    const existing = new Map([...modelGrid.querySelectorAll(".model-card")].map((c) => [c.dataset.model, c]));
    const cards = models.map((m) => {
      const sig = sigOf(m);
      let card = existing.get(m.name);
      if (!card || card.dataset.sig !== sig) {
        card = modelCard(m, false, select);
        card.dataset.sig = sig;
      }
      card.classList.toggle("selected", m.name === ui.model);
      card.setAttribute("aria-pressed", m.name === ui.model ? "true" : "false");
      return card;
    });
    const same = cards.length === modelGrid.children.length && cards.every((c, i) => modelGrid.children[i] === c);
    if (!same) clear(modelGrid, cards);
  }

  function renderForm() {
    const model = state.models.find((m) => m.name === ui.model);
    if (!model) {
      clear(formPanel, h("div", { class: "panel-head" }, h("h2", null, "Parameters")), h("div", { class: "empty" }, "Pick a model."));
      form = null;
      return;
    }
    if (form && form.model.name === model.name) return;
    if (form) ui.keep.set(form.model.name, form.fields.read().params);
    extensions?.unmount();
    const fields = schemaFields(model);
    const variants = model.variants || [];
    const auto = variants.find((v) => v.name === model.auto_variant) || null;
    const variantSelect = h(
      "select",
      { id: "gen-variant", name: "variant", "data-testid": "variant-select" },
      h("option", { value: "" }, auto ? `auto → ${auto.name}` : "auto (server default)"),
      variants.map((v) => h("option", { value: v.name }, `${v.name}${v.tiny ? " · tiny" : ""}`)),
    );
    // Which variant will run, in plain sight (the select is under "Advanced").
    const variantLine = h("div", { class: "form-variant", "data-testid": "form-variant" });
    const showVariant = () => {
      const chosen = variantSelect.value ? variants.find((v) => v.name === variantSelect.value) : auto;
      const name = variantSelect.value || (auto ? `auto → ${auto.name}` : "auto");
      const noise = Boolean(chosen && chosen.tiny && model.needs_weights !== false);
      clear(
        variantLine,
        h("span", { class: "muted" }, "Variant "),
        h("span", { class: "tag mono", "data-testid": "form-variant-name" }, name),
        noise
          ? h(
              "span",
              { class: "tag tag-warn", "data-testid": "noise-warning", title: chosen.description || "" },
              "random weights: the video is noise",
            )
          : null,
      );
    };
    const priority = h("input", { id: "gen-priority", type: "number", step: "1", min: "-1000", max: "1000", value: "0", "data-testid": "param-priority" });
    const schedule = h("input", { id: "gen-schedule", type: "text", placeholder: "none", "data-testid": "param-schedule" });
    const extra = {
      variant: fieldWrap(
        "variant",
        "Variant",
        variantSelect,
        model.needs_weights === false ? "This model needs no weights." : "auto: real weights when configured, else the tiny stand-in.",
      ),
      priority: fieldWrap("priority", "Priority", priority, "Higher runs first (−1000 … 1000)."),
      schedule: fieldWrap("schedule", "Hybrid schedule", schedule, "A shipped schedule name; empty for none."),
    };
    // The model's inputs beside text (a first frame, actions): a file on the server's
    // machine, or the numbers as a JSON array. The server checks them against the model.
    const inputs = {};
    const inputWraps = [];
    for (const spec of model.inputs || []) {
      const control = h("input", {
        id: `gen-input-${spec.name}`,
        type: "text",
        placeholder: `${spec.required ? "required" : "optional"}: a path on the server, or a JSON array`,
        "data-testid": `input-${spec.name}`,
      });
      inputs[spec.name] = control;
      const rows = spec.per_chunk ? `, ${spec.per_chunk} rows per chunk` : "";
      const help = `${spec.description ? spec.description + ". " : ""}Shape (${spec.shape.join(", ")})${rows}.`;
      const label = spec.kind === spec.name ? spec.name : `${spec.name} · ${spec.kind}`;
      const wrap = fieldWrap(`inputs.${spec.name}`, spec.required ? `${label} (required)` : label, control, help);
      extra[`inputs.${spec.name}`] = wrap;
      inputWraps.push(wrap);
    }
    // A plugin's panel for this model (a dataset sample picker, ...): it may set parameters.
    const extHost = h("div", { class: "ext-host", "data-testid": "extension-host" });
    extensions = mountExtensions(extHost, "mountGenerate", model.name, {
      params: () => fields.read().params,
      setParams: (values) => fields.fill(values),
    });
    const banner = h("div", { class: "form-error", role: "alert", "data-testid": "form-error", hidden: true });
    const submit = h("button", { type: "submit", class: "btn btn-primary", "data-testid": "generate-button" }, "Generate");
    const reset = h("button", { type: "button", class: "btn btn-ghost", "data-testid": "reset-form" }, "Reset to defaults");
    const formEl = h(
      "form",
      { class: "gen-form", novalidate: true, "data-testid": "generate-form", autocomplete: "off" },
      banner,
      variantLine,
      extHost,
      fields.el,
      inputWraps.length
        ? h("fieldset", { class: "gen-inputs", "data-testid": "generate-inputs" }, h("legend", null, "Inputs"), inputWraps)
        : null,
      h(
        "details",
        { class: "advanced" },
        h("summary", null, "Advanced"),
        h("div", { class: "field-grid" }, extra.variant, extra.priority, extra.schedule),
      ),
      h("div", { class: "form-actions" }, reset, h("span", { class: "kbd-hint muted" }, "Ctrl + Enter"), submit),
    );
    form = { model, fields, formEl, banner, submit, variantSelect, priority, schedule, extra, inputs };
    // The defaults of the variant that will run (auto resolved as the server resolves it).
    fields.fill(fields.defaults(""));
    if (ui.keep.has(model.name)) fields.fill(ui.keep.get(model.name));
    showVariant();

    variantSelect.addEventListener("change", () => {
      fields.fill(fields.defaults(variantSelect.value));
      showVariant();
    });
    reset.addEventListener("click", () => {
      fields.fill(fields.defaults(variantSelect.value));
      fields.clearErrors();
      hideBanner();
    });
    formEl.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        formEl.requestSubmit();
      }
    });
    formEl.addEventListener("submit", (e) => {
      e.preventDefault();
      onSubmit();
    });
    clear(
      formPanel,
      h(
        "div",
        { class: "panel-head" },
        h("h2", null, "Parameters"),
        h("span", { class: "panel-sub mono", "data-testid": "form-model" }, model.name),
      ),
      formEl,
    );
  }

  function hideBanner() {
    if (!form) return;
    form.banner.hidden = true;
    form.banner.textContent = "";
    for (const w of Object.values(form.extra)) {
      w.classList.remove("invalid");
      w.querySelector(".field-error").hidden = true;
    }
  }

  function showBanner(text) {
    form.banner.replaceChildren(h("strong", null, "Not queued. "), text);
    form.banner.hidden = false;
  }

  function showFieldError(field, message) {
    const name = String(field || "").replace(/^params\./, "");
    if (form.fields.showError(name, message)) return;
    const wrap = form.extra[name];
    if (wrap) {
      wrap.classList.add("invalid");
      const msg = wrap.querySelector(".field-error");
      msg.textContent = message;
      msg.hidden = false;
      const details = wrap.closest("details");
      if (details && name !== "priority") details.open = true;
    }
  }

  async function onSubmit() {
    if (!form) return;
    form.fields.clearErrors();
    hideBanner();
    const { params, errors } = form.fields.read();
    if (errors.length) {
      for (const e of errors) showFieldError(e.field, e.message);
      showBanner(errors.map((e) => `${e.field}: ${e.message}`).join("; "));
      return;
    }
    const body = { model: form.model.name, params };
    if (form.variantSelect.value) body.variant = form.variantSelect.value;
    const priority = form.priority.value.trim();
    if (priority !== "" && priority !== "0") body.priority = Number(priority);
    const schedule = form.schedule.value.trim();
    if (schedule) body.schedule = schedule;
    const { inputs, error } = readInputs(form.inputs);
    if (error) {
      showFieldError(error.field, error.message);
      showBanner(`${error.field}: not a JSON array`);
      return;
    }
    if (Object.keys(inputs).length) body.inputs = inputs;
    form.submit.disabled = true;
    setText(form.submit, "Submitting…");
    try {
      const job = await api("/api/sessions", { method: "POST", body });
      upsertJob(job);
      ui.activeJobId = job.id;
      renderJobs();
      renderOutput();
    } catch (err) {
      if (err.field) showFieldError(err.field, err.detail);
      showBanner(err.message);
    } finally {
      form.submit.disabled = false;
      setText(form.submit, "Generate");
    }
  }

  function activeJob() {
    if (ui.activeJobId && state.jobs.has(ui.activeJobId)) return state.jobs.get(ui.activeJobId);
    let newest = null;
    for (const j of state.jobs.values()) if (!newest || j.id > newest.id) newest = j;
    return newest;
  }

  function renderOutput() {
    const job = activeJob();
    const current = outputBody.querySelector(".job-card");
    if (job && current && Number(current.dataset.jobId) === job.id) return;
    if (!job) {
      clear(
        outputBody,
        h(
          "div",
          { class: "empty empty-output", "data-testid": "output-empty" },
          h("div", { class: "empty-art" }),
          h("p", null, "Pick a model, set its parameters and press Generate."),
          h("p", { class: "muted" }, "The timer, progress, live previews, the log and the video show here."),
        ),
      );
      return;
    }
    clear(outputBody, jobCard(job));
    for (const row of jobList.querySelectorAll(".job-row")) row.classList.toggle("selected", Number(row.dataset.jobId) === job.id);
  }

  function renderJobs() {
    const jobs = [...state.jobs.values()].sort((a, b) => b.id - a.id).slice(0, 30);
    setText(jobCount, jobs.length ? `${state.jobs.size} this server run` : "");
    if (!jobs.length) {
      clear(jobList, h("div", { class: "empty" }, "No jobs yet."));
      return;
    }
    const existing = new Map([...jobList.querySelectorAll(".job-row")].map((r) => [Number(r.dataset.jobId), r]));
    const rows = jobs.map((j) => existing.get(j.id) || jobRow(j, { onSelect }));
    clear(jobList, rows);
    const active = activeJob();
    for (const row of rows) row.classList.toggle("selected", Boolean(active) && Number(row.dataset.jobId) === active.id);
  }

  function onSelect(id) {
    ui.activeJobId = id;
    renderOutput();
    outputPanel.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  renderModels();
  renderForm();
  renderOutput();
  renderJobs();

  const stopTimers = startJobTimers();
  const off = listen((ev) => {
    switch (ev.type) {
      case "snapshot":
        renderModels();
        renderForm();
        renderJobs();
        renderOutput();
        break;
      case "models":
      case "gpus":
      case "conn":
        renderModels();
        if (!form) renderForm();
        break;
      case "job":
        if (!jobList.querySelector(`[data-job-id="${ev.job.id}"]`)) renderJobs();
        if (!ui.activeJobId) renderOutput();
        break;
      case "spawned":
        if (!ui.activeJobId || ui.activeJobId === ev.from) ui.activeJobId = ev.job.id;
        renderJobs();
        renderOutput();
        break;
      default:
        break;
    }
  });
  return () => {
    if (form) ui.keep.set(form.model.name, form.fields.read().params);
    extensions?.unmount();
    stopTimers();
    off();
  };
}

function fieldWrap(name, label, control, help) {
  return h(
    "div",
    { class: "field", "data-field": name, "data-testid": `field-${name}` },
    h("div", { class: "field-label" }, h("label", { for: control.id }, label)),
    control,
    h("div", { class: "field-help" }, help),
    h("div", { class: "field-error", "data-testid": `field-error-${name}`, hidden: true }),
  );
}

function modelsPlaceholder() {
  if (state.conn === "live") return "No models are installed.";
  if (state.conn === "unauthorized") return "The server needs its token to list the models (see above).";
  return "Loading models…";
}
