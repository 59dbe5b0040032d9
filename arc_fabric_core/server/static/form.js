// A form generated from a pydantic JSON schema, filled with its defaults: a model's
// parameters (schemaFields) or an operation's request (requestFields).

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

/** A bound a number input can hold exactly, else null: a 64-bit one (a seed's 2**63 - 1)
 * is no limit a person meets, and as a JS number it is off by hundreds. */
export function safeBound(v) {
  return typeof v === "number" && Math.abs(v) <= Number.MAX_SAFE_INTEGER ? v : null;
}

/** A number field's bounds as an input takes them: {min, max}, an exclusive bound moved
 * in by `step` (a range input has no open end), null where the schema sets none. */
export function numberBounds(prop, step = 1) {
  const p = prop || {};
  const lo = safeBound(p.minimum) ?? (safeBound(p.exclusiveMinimum) === null ? null : p.exclusiveMinimum + step);
  const hi = safeBound(p.maximum) ?? (safeBound(p.exclusiveMaximum) === null ? null : p.exclusiveMaximum - step);
  return { min: lo, max: hi };
}

function constraintHint(schema, kind) {
  if (kind !== "int" && kind !== "float") return "";
  const exclusive = (v, sign) => (safeBound(v) === null ? null : `${sign}${v}`);
  const lo = safeBound(schema.minimum) ?? exclusive(schema.exclusiveMinimum, ">");
  const hi = safeBound(schema.maximum) ?? exclusive(schema.exclusiveMaximum, "<");
  if (lo !== null && hi !== null) return `${lo} – ${hi}`;
  if (lo !== null) return typeof lo === "string" ? lo.replace(">", "> ") : `≥ ${lo}`;
  if (hi !== null) return typeof hi === "string" ? hi.replace("<", "< ") : `≤ ${hi}`;
  return kind === "int" ? "integer" : "";
}

/**
 * A model's parameter fields. Returns {el, fields, byName, read, fill, defaults, showError, clearErrors}.
 * `read()` gives {params, errors}: the values to send and any the browser could not parse.
 */
export function schemaFields(model, { idPrefix = "param", compact = false } = {}) {
  const form = fieldsOf(model.params_schema || {}, { idPrefix, compact, fixed: model.fixed_params || [] });
  const { fields } = form;

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

  return { ...form, defaults };
}

/** The fields of an operation's request schema (GET /api/operations), less those in
 * `skip` (a form of its own shows them); the same {el, fields, read, ...} as schemaFields. */
export function requestFields(schema, { idPrefix = "op", skip = [] } = {}) {
  // A blank text is left out of a request (its default applies), never sent as "".
  return fieldsOf(schema || {}, { idPrefix, skip: new Set(skip), blankOmitted: true });
}

/** The properties of a schema, each resolved (a $ref or a nullable anyOf followed). */
export function schemaProps(schema) {
  const defs = (schema && (schema.$defs || schema.definitions)) || {};
  const out = {};
  for (const [name, raw] of Object.entries((schema && schema.properties) || {})) out[name] = resolveSchema(raw, defs);
  return out;
}

function fieldsOf(schema, { idPrefix, compact = false, fixed = [], skip = new Set(), blankOmitted = false }) {
  const fixedSet = new Set(fixed);
  const required = new Set(schema.required || []);
  const fields = [];
  for (const [name, prop] of Object.entries(schemaProps(schema))) {
    if (skip.has(name)) continue;
    fields.push({ name, prop, kind: fieldKind(name, prop), fixed: fixedSet.has(name), required: required.has(name), blankOmitted });
  }
  // Long texts first, full width; then everything else in a grid.
  const wide = fields.filter((f) => f.kind === "text" || f.kind === "json");
  const narrow = fields.filter((f) => f.kind !== "text" && f.kind !== "json");

  for (const f of fields) f.el = buildField(f, idPrefix);
  const el = h(
    "div",
    { class: "schema-fields" },
    wide.map((f) => f.el),
    narrow.length ? h("div", { class: compact ? "field-grid field-grid-compact" : "field-grid" }, narrow.map((f) => f.el)) : null,
  );
  const byName = new Map(fields.map((f) => [f.name, f]));

  function fill(values) {
    for (const f of fields) {
      if (Object.prototype.hasOwnProperty.call(values, f.name)) setValue(f, values[f.name]);
    }
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

  return { el, fields, byName, read, fill, showError, clearErrors };
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
      min: safeBound(prop.minimum),
      max: safeBound(prop.maximum),
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
    f.required ? h("span", { class: "tag tag-required", title: "The request needs it", "data-testid": "field-required" }, "required") : null,
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
      return f.blankOmitted && c.value.trim() === "" ? { omit: true } : { value: c.value };
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

/** The values of a model's input fields (``{name: <input>}``): a path on the server as it
 * is, a JSON array parsed; empty fields left out. ``{inputs}``, or ``{error: {field, message}}``
 * for text that is no JSON array. */
export function readInputs(controls) {
  const inputs = {};
  for (const [name, control] of Object.entries(controls)) {
    const text = control.value.trim();
    if (!text) continue;
    if (!text.startsWith("[")) {
      inputs[name] = text;
      continue;
    }
    try {
      inputs[name] = JSON.parse(text);
    } catch (err) {
      return { error: { field: `inputs.${name}`, message: `not a JSON array (${err.message})` } };
    }
  }
  return { inputs };
}
