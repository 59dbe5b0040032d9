// A parameter form generated from a model's pydantic JSON schema, filled with its defaults.

import { h, humanize } from "./core.js";

/** Follow $ref / allOf / anyOf (nullable) to the schema a field really has. */
export function resolveSchema(prop, defs = {}) {
  if (!prop || typeof prop !== "object") return {};
  const { $ref, allOf, anyOf, oneOf, ...rest } = prop;
  if ($ref) {
    const target = defs[$ref.split("/").pop()] || {};
    return { ...resolveSchema(target, defs), ...rest };
  }
  if (allOf && allOf.length === 1) return { ...resolveSchema(allOf[0], defs), ...rest };
  const options = anyOf || oneOf;
  if (options) {
    const real = options.filter((o) => o.type !== "null");
    const nullable = real.length < options.length;
    if (real.length === 1) return { ...resolveSchema(real[0], defs), ...rest, nullable };
    return { ...rest, type: "json", nullable };
  }
  return { ...rest };
}

export function fieldKind(name, schema) {
  if (Array.isArray(schema.enum)) return "enum";
  if (schema.const !== undefined) return "enum";
  switch (schema.type) {
    case "boolean":
      return "bool";
    case "integer":
      return "int";
    case "number":
      return "float";
    case "string":
      if (/prompt/i.test(name) || (schema.maxLength || 0) > 200 || schema.format === "textarea") return "text";
      return "string";
    default:
      return "json";
  }
}

function constraintHint(schema, kind) {
  if (kind !== "int" && kind !== "float") return "";
  const lo = schema.minimum ?? (schema.exclusiveMinimum !== undefined ? `>${schema.exclusiveMinimum}` : null);
  const hi = schema.maximum ?? (schema.exclusiveMaximum !== undefined ? `<${schema.exclusiveMaximum}` : null);
  if (lo !== null && hi !== null) return `${lo} – ${hi}`;
  if (lo !== null) return typeof lo === "string" ? lo.replace(">", "> ") : `≥ ${lo}`;
  if (hi !== null) return typeof hi === "string" ? hi.replace("<", "< ") : `≤ ${hi}`;
  return kind === "int" ? "integer" : "";
}

/**
 * Build the form's fields. Returns {el, fields, read, fill, showError, clearErrors}.
 * `read()` gives {params, errors}: the values to send and any the browser could not parse.
 */
export function schemaFields(model, { idPrefix = "param", compact = false } = {}) {
  const schema = model.params_schema || {};
  const defs = schema.$defs || schema.definitions || {};
  const fixed = new Set(model.fixed_params || []);
  const fields = [];
  for (const [name, raw] of Object.entries(schema.properties || {})) {
    const prop = resolveSchema(raw, defs);
    fields.push({ name, prop, kind: fieldKind(name, prop), fixed: fixed.has(name) });
  }
  // Long texts first, full width; then everything else in a grid.
  const wide = fields.filter((f) => f.kind === "text" || f.kind === "json");
  const narrow = fields.filter((f) => f.kind !== "text" && f.kind !== "json");

  for (const f of fields) f.el = buildField(f, idPrefix);
  const el = h(
    "div",
    { class: "schema-fields" },
    wide.map((f) => f.el),
    h("div", { class: compact ? "field-grid field-grid-compact" : "field-grid" }, narrow.map((f) => f.el)),
  );
  const byName = new Map(fields.map((f) => [f.name, f]));

  function fill(values) {
    for (const f of fields) {
      if (Object.prototype.hasOwnProperty.call(values, f.name)) setValue(f, values[f.name]);
    }
  }

  /** The parameters a run of the variant gets (`""`: the variant `auto` runs on this server):
   * the server's `defaults` of that variant, else its `param_defaults` over the schema's. */
  function defaults(variantName) {
    const name = variantName || model.auto_variant;
    const own = (model.variants || []).find((v) => v.name === name);
    if (own && own.defaults) return { ...own.defaults };
    const out = {};
    for (const f of fields) if (f.prop.default !== undefined) out[f.name] = f.prop.default;
    if (own && own.param_defaults) Object.assign(out, own.param_defaults);
    return out;
  }

  function read() {
    const params = {};
    const errors = [];
    for (const f of fields) {
      const got = getValue(f);
      if (got.error) errors.push({ field: f.name, message: got.error });
      else if (!got.omit) params[f.name] = got.value;
    }
    return { params, errors };
  }

  function showError(field, message) {
    const f = byName.get(field);
    if (!f) return false;
    f.el.classList.add("invalid");
    f.control.setAttribute("aria-invalid", "true");
    const msg = f.el.querySelector(".field-error");
    msg.textContent = message;
    msg.hidden = false;
    return true;
  }

  function clearErrors() {
    for (const f of fields) clearFieldError(f);
  }

  return { el, fields, byName, read, fill, defaults, showError, clearErrors };
}

function clearFieldError(f) {
  f.el.classList.remove("invalid");
  f.control.removeAttribute("aria-invalid");
  const msg = f.el.querySelector(".field-error");
  msg.hidden = true;
  msg.textContent = "";
}

function buildField(f, idPrefix) {
  const { name, prop, kind } = f;
  const id = `${idPrefix}-${name}`;
  const common = { id, name, "data-testid": `${idPrefix}-${name}`, "aria-describedby": `${id}-help` };
  let control;
  if (kind === "text") {
    control = h("textarea", { ...common, rows: /negative/i.test(name) ? 2 : 3, placeholder: prop.description || "" });
  } else if (kind === "string") {
    control = h("input", { ...common, type: "text", maxlength: prop.maxLength ?? null });
  } else if (kind === "int" || kind === "float") {
    control = h("input", {
      ...common,
      type: "number",
      inputmode: kind === "int" ? "numeric" : "decimal",
      step: kind === "int" ? (prop.multipleOf ?? 1) : (prop.multipleOf ?? "any"),
      min: prop.minimum ?? null,
      max: prop.maximum ?? null,
    });
  } else if (kind === "bool") {
    control = h("input", { ...common, type: "checkbox", role: "switch" });
  } else if (kind === "enum") {
    const values = Array.isArray(prop.enum) ? prop.enum : [prop.const];
    f.options = prop.nullable ? [null, ...values] : values;
    control = h(
      "select",
      common,
      f.options.map((v, i) => h("option", { value: String(i) }, v === null ? "—" : String(v))),
    );
  } else {
    control = h("textarea", { ...common, rows: 2, class: "mono", placeholder: "JSON" });
  }
  f.control = control;
  const hint = constraintHint(prop, kind);
  const label = h(
    "div",
    { class: "field-label" },
    h("label", { for: id }, prop.title || humanize(name)),
    f.fixed
      ? h("span", { class: "tag tag-fixed", title: "Fixed for the session: forks and edits keep it" }, "fixed")
      : null,
  );
  const help = h(
    "div",
    { class: "field-help", id: `${id}-help` },
    hint ? h("span", { class: "field-range mono" }, hint) : null,
    hint && prop.description ? " · " : null,
    prop.description || "",
  );
  const error = h("div", { class: "field-error", "data-testid": `field-error-${name}`, hidden: true });
  let body;
  if (kind === "bool") {
    body = h(
      "label",
      { class: "switch-row", for: id },
      control,
      h("span", { class: "switch" }),
      h("span", { class: "switch-text" }, prop.title || humanize(name)),
    );
  }
  const wrapper = h(
    "div",
    { class: `field field-${kind}`, "data-field": name, "data-testid": `field-${name}` },
    kind === "bool" ? null : label,
    kind === "bool" ? body : control,
    prop.description || hint ? help : null,
    error,
  );
  if (name === "seed" && kind === "int") {
    const dice = h(
      "button",
      { type: "button", class: "btn btn-sm btn-icon", title: "Random seed", "aria-label": "Random seed", "data-testid": "seed-random" },
      "⟳",
    );
    dice.addEventListener("click", () => {
      const max = Math.min(prop.maximum ?? 2 ** 31 - 1, 2 ** 31 - 1);
      control.value = String(Math.floor(Math.random() * (max + 1)));
      control.dispatchEvent(new Event("input", { bubbles: true }));
    });
    const row = h("div", { class: "input-with-button" });
    control.replaceWith(row);
    row.append(control, dice);
  }
  const clearOwn = () => clearFieldError(f);
  control.addEventListener("input", clearOwn);
  control.addEventListener("change", clearOwn);
  if (prop.default !== undefined) setValue(f, prop.default);
  return wrapper;
}

function setValue(f, value) {
  const c = f.control;
  switch (f.kind) {
    case "bool":
      c.checked = Boolean(value);
      break;
    case "enum": {
      const i = f.options.findIndex((o) => o === value);
      c.value = String(i < 0 ? 0 : i);
      break;
    }
    case "json":
      c.value = value === null || value === undefined ? "" : JSON.stringify(value);
      break;
    default:
      c.value = value === null || value === undefined ? "" : String(value);
  }
}

function getValue(f) {
  const c = f.control;
  switch (f.kind) {
    case "bool":
      return { value: c.checked };
    case "enum":
      return { value: f.options[Number(c.value)] ?? null };
    case "text":
    case "string":
      return { value: c.value };
    case "int":
    case "float": {
      if (c.validity && c.validity.badInput) return { error: f.kind === "int" ? "enter a whole number" : "enter a number" };
      const raw = c.value.trim();
      if (raw === "") return f.prop.nullable ? { value: null } : { omit: true };
      return { value: Number(raw) };
    }
    default: {
      const raw = c.value.trim();
      if (raw === "") return f.prop.nullable ? { value: null } : { omit: true };
      try {
        return { value: JSON.parse(raw) };
      } catch {
        return { error: "not valid JSON" };
      }
    }
  }
}
