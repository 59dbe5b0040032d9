// Models as the views show them: their warm/cold state and what they can do (their
// capabilities, as GET /api/models gives them). Shared by the views, so no view imports another.

import { h, state } from "./core.js";

/** The model named `name` from GET /api/models, or null while the list is not loaded (or it is not installed). */
export function modelNamed(name) {
  return state.models.find((m) => m.name === name) || null;
}

/** A model's capabilities (edit, masks, extend, rewind, passes, inputs, operations), or
 * null while they are unknown: the models are not loaded yet, or the model is not installed. */
export function capabilitiesOf(name) {
  const model = modelNamed(name);
  return model && model.capabilities ? model.capabilities : null;
}

/** Every registered operation the model takes (GET /api/models' `operations`: the
 * engine's own and those plugins add), else its capabilities' list; null while unknown. */
export function operationsOf(name) {
  const model = modelNamed(name);
  if (!model) return null;
  if (Array.isArray(model.operations)) return model.operations;
  return model.capabilities ? model.capabilities.operations || [] : null;
}

/** Whether the model takes operation `op` ("edit", "extend", ...); false while unknown. */
export function offers(name, op) {
  return (operationsOf(name) || []).includes(op);
}

/** A device id as the views name it: with the GPU's name, "cpu" for the CPU. */
export function deviceLabel(id) {
  const gpu = state.gpus.find((g) => g.id === id);
  if (!gpu) return id;
  return gpu.kind === "cpu" ? "cpu" : `${id} (${gpu.name})`;
}

/** A variant's state: cold, loading, warm (and where), offloaded... */
export function modelStatePill(model, variantState, { showDevice = true } = {}) {
  const s = variantState || { state: "cold", device: null };
  const device = s.device && showDevice ? deviceLabel(s.device) : null;
  return h(
    "span",
    { class: `state-pill state-${s.state}`, "data-testid": "model-state", "data-state": s.state, title: s.device || "" },
    h("span", { class: "dot" }),
    s.state,
    device ? h("span", { class: "state-device" }, ` · ${device}`) : null,
  );
}

/** What a model does beyond generating, in brief: tags for its model card. */
export function capabilityTags(model) {
  const caps = model.capabilities;
  if (!caps) return [];
  const tags = [];
  if (caps.edit) tags.push(["edit", caps.masks ? "Re-denoises a region of a finished video" : "Re-denoises a finished video (no region)"]);
  if (caps.extend) tags.push(["extend", "Adds blocks to a finished video"]);
  if (caps.rewind) tags.push(["rewind", "Remakes the blocks from one on"]);
  if (caps.autoregressive) tags.push(["autoregressive", "Makes its video a block at a time"]);
  if (caps.passes) tags.push(["passes", "Denoises in several passes"]);
  for (const kind of caps.inputs || []) tags.push([`${kind} input`, `Takes ${kind} input beside the prompt`]);
  return tags.map(([text, title]) => h("span", { class: "tag tag-cap", title, "data-testid": "model-capability", "data-capability": text }, text));
}
