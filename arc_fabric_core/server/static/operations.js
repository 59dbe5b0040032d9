// The operations registry as GET /api/operations gives it (every operation on sessions,
// the built-in ones and those plugins add, each with its request's JSON schema), and the
// shipped hybrid schedules a hand-off can name. Each is fetched once, when a view first
// asks (never at import), and kept: the registry does not change while a server runs.

import { api } from "./core.js";

let operations = null; // name -> {name, summary, on_session, runs, schema}
let operationsPending = null;
let schedules = null; // [name]
let schedulesPending = null;

/** The registry, by name (in the registry's order). A failed fetch is not kept: the next call tries again. */
export function loadOperations() {
  if (operations) return Promise.resolve(operations);
  operationsPending ??= api("/api/operations")
    .then((list) => (operations = new Map(list.map((op) => [op.name, op]))))
    .finally(() => (operationsPending = null));
  return operationsPending;
}

/** The registry if it is loaded, else null. */
export function loadedOperations() {
  return operations;
}

/** The names of the shipped hybrid schedules (GET /api/schedules). */
export function loadSchedules() {
  if (schedules) return Promise.resolve(schedules);
  schedulesPending ??= api("/api/schedules")
    .then((names) => (schedules = names))
    .finally(() => (schedulesPending = null));
  return schedulesPending;
}
