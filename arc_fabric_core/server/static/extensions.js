// Plugins' UI extensions (GET /api/extensions, a plugin's arc_register_ui): each is an ES
// module served at ext/<name>/, imported on the pages of the models it is for. The core
// knows nothing of what one shows; it gives it a place on the page and a small API.
//
// A module exports either or both of
//   mountGenerate(ctx)  the generate page, while one of its models is picked
//   mountSession(ctx)   a session page of one of its models
// and each returns nothing, a function (called when the page leaves), or
// {update(value), unmount()}: update gets the session's detail again whenever the page
// re-reads it (a job on it moved on).
//
// ctx, on both pages: el (the extension's own container), extension (its listing: name,
// models, api), model (the model's description), base (its routes: "api/ext/<name>/"),
// api(path, {method, body}) and apiUrl(path) from core.js, setMediaSrc(el, path) (a
// <video> or <img> of a server path, with the token when there is one), listen(fn) (the
// event stream; unsubscribed when it unmounts), state (what the page knows: jobs,
// previews), h/clear/toast (DOM helpers), submitted(job) (a job it queued: the page
// tracks it as one of its own).
// The generate page adds params() (the form's current parameters) and setParams(values)
// (fill some of them). The session page adds session (its detail, as GET
// /api/sessions/{id} answers) and sessionId.

import { api, apiUrl, clear, emit, h, listen, setMediaSrc, state, toast } from "./core.js";
import { upsertJob } from "./jobs.js";

let listing = null; // a promise of the list, fetched once per page load

/** The extensions the server lists (fetched once; a failure is tried again next time). */
export function loadExtensions() {
  if (!listing) {
    listing = api("/api/extensions").catch((err) => {
      listing = null;
      throw err;
    });
  }
  return listing;
}

const styled = new Set();

function addStyles(ext) {
  for (const href of ext.styles || []) {
    if (styled.has(href)) continue;
    styled.add(href);
    document.head.append(h("link", { rel: "stylesheet", href: apiUrl(href), "data-extension": ext.name }));
  }
}

const modules = new Map(); // module path -> promise of the module

function importModule(ext) {
  if (!modules.has(ext.module)) modules.set(ext.module, import(apiUrl(ext.module)));
  return modules.get(ext.module);
}

/**
 * Mount every extension for `modelName` that exports `hook` ("mountGenerate" or
 * "mountSession") into `host`, each in a container of its own. `extra`: what the page adds
 * to ctx. Returns {update(value), unmount()} at once; the modules load meanwhile.
 */
export function mountExtensions(host, hook, modelName, extra) {
  const mounted = []; // {update, unmount}
  let gone = false;
  let latest; // the last update's value, for a module that loads after it

  (async () => {
    let exts;
    try {
      exts = await loadExtensions();
    } catch (err) {
      console.warn("UI extensions could not be listed:", err.message);
      return;
    }
    for (const ext of exts) {
      if (gone) return;
      if (ext.models.length && !ext.models.includes(modelName)) continue;
      let mod;
      try {
        mod = await importModule(ext);
      } catch (err) {
        console.warn(`UI extension ${ext.name} could not be loaded:`, err);
        continue;
      }
      if (gone || typeof mod[hook] !== "function") continue;
      addStyles(ext);
      const el = h("section", { class: "ext-panel", "data-extension": ext.name, "data-testid": `ext-${ext.name}` });
      host.append(el);
      const offs = [];
      const ctx = {
        ...extra,
        el,
        extension: ext,
        model: state.models.find((m) => m.name === modelName) || { name: modelName },
        base: ext.api,
        api,
        apiUrl,
        setMediaSrc,
        state,
        h,
        clear,
        toast,
        listen(fn) {
          const off = listen(fn);
          offs.push(off);
          return off;
        },
        submitted(job) {
          upsertJob(job);
          emit({ type: "spawned", job, from: null });
        },
      };
      if (latest !== undefined) ctx.session = latest;
      let out;
      try {
        out = mod[hook](ctx);
      } catch (err) {
        console.warn(`UI extension ${ext.name} failed to mount:`, err);
        el.remove();
        continue;
      }
      const handle = typeof out === "function" ? { unmount: out } : out || {};
      mounted.push({
        update: (value) => handle.update?.(value),
        unmount: () => {
          for (const off of offs) off();
          handle.unmount?.();
          el.remove();
        },
      });
    }
  })();

  return {
    update(value) {
      latest = value;
      for (const m of mounted) {
        try {
          m.update(value);
        } catch (err) {
          console.warn(err);
        }
      }
    },
    unmount() {
      gone = true;
      for (const m of mounted.splice(0)) {
        try {
          m.unmount();
        } catch (err) {
          console.warn(err);
        }
      }
    },
  };
}
