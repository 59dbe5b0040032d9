"""Plugin discovery and dispatch.

Entry points in the ``arc_fabric`` group load lazily, once. ``ARC_FABRIC_LOAD_PLUGINS``
is an allow-list of entry-point names (comma separated; empty = none).
``ARC_FABRIC_TRACE_PLUGINS=1`` prints every hook call to stderr.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from arc_fabric_core.contract import hookspecs
from arc_fabric_core.contract.capabilities import Capabilities, resolve_capabilities
from arc_fabric_core.contract.errors import ArcFabricError, UnknownModelError
from arc_fabric_core.contract.models import ModelSpec
from arc_fabric_core.contract.ui import UiExtension

ENTRY_POINT_GROUP = "arc_fabric"
# The built-in operations register through arc_register_operations like a plugin's do; the
# module is named, not imported, because operations sit above this layer.
BUILTIN_OPERATIONS = "arc_fabric_core.operations.builtin"
# The built-in step caches (params.cache): a plugin that owns no model and wraps every
# model's step, registered with the entry points (and, like the built-in operations, never
# listed as a plugin: each model's description lists the caches it takes).
BUILTIN_CACHES = "arc_fabric_core.runtime.step_caches.plugin"
BUILTIN_CACHES_NAME = "step_caches"
STAGE_HOOKS = ("arc_load", "arc_encode", "arc_schedule", "arc_prepare_latents", "arc_denoise_step", "arc_decode")
# Stage hooks a model may leave out; some come in pairs (passes need a way between them).
OPTIONAL_STAGE_HOOKS = {
    "arc_passes": ("arc_next_pass",),
    "arc_activation_bytes": (),
    "arc_move": (),
    "arc_source_inputs": (),
}


@dataclass(frozen=True)
class PluginInfo:
    name: str
    package: str | None
    version: str | None


class Plugins:
    """The plugin manager plus the model registry built from ``arc_register_models``."""

    def __init__(self, load_entrypoints: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._infos: dict[str, PluginInfo] = {}
        self._entrypoints_loaded = not load_entrypoints
        self._models: dict[str, tuple[ModelSpec, object]] | None = None
        self._operations: dict[str, Any] | None = None
        self._operation_owners: dict[str, str] = {}
        self._capabilities: dict[str, Capabilities] = {}
        self._trace = bool(os.environ.get("ARC_FABRIC_TRACE_PLUGINS"))
        if self._trace:
            self.pm.add_hookcall_monitoring(_trace_before, _trace_after)

    # -- discovery

    def _ensure_loaded(self) -> None:
        if self._entrypoints_loaded:
            return
        self._entrypoints_loaded = True
        self.register_builtin_caches()
        allow = os.environ.get("ARC_FABRIC_LOAD_PLUGINS")
        allowed = None if allow is None else {n.strip() for n in allow.split(",") if n.strip()}
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if allowed is not None and ep.name not in allowed:
                continue
            if self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must not take the core down
                sys.stderr.write(f"arc_fabric: could not load plugin {ep.name!r}: {exc}\n")
                continue
            dist = getattr(ep, "dist", None)
            self.register(
                plugin, name=ep.name, package=dist.name if dist else None, version=dist.version if dist else None
            )

    def register_builtin_caches(self) -> None:
        """Register the core's step caches (done with the entry points; a manager made
        without them, as tests make it, calls this itself)."""
        caches = importlib.import_module(BUILTIN_CACHES)
        if not self.pm.is_registered(caches) and self.pm.get_plugin(BUILTIN_CACHES_NAME) is None:
            self.register(caches, name=BUILTIN_CACHES_NAME)

    def register(self, plugin: object, name: str | None = None, package: str | None = None, version: str | None = None):
        """Register a plugin object (tests and embedding code use this directly)."""
        registered = self.pm.register(plugin, name=name)
        self._infos[registered] = PluginInfo(registered, package, version)
        self._models = self._operations = None
        return registered

    def unregister(self, plugin: object) -> None:
        name = self.pm.get_name(plugin)
        self.pm.unregister(plugin)
        self._infos.pop(name, None)
        self._models = self._operations = None

    @property
    def hook(self) -> Any:
        self._ensure_loaded()
        return self.pm.hook

    # -- models

    def _registry(self) -> dict[str, tuple[ModelSpec, object]]:
        self._ensure_loaded()
        if self._models is None:
            models: dict[str, tuple[ModelSpec, object]] = {}
            capabilities: dict[str, Capabilities] = {}
            for impl in self.pm.hook.arc_register_models.get_hookimpls():
                owner = impl.plugin

                def register(spec: ModelSpec, _owner: object = owner, _name: str = impl.plugin_name) -> None:
                    if spec.name in models:
                        other = self.pm.get_name(models[spec.name][1])
                        raise ArcFabricError(f"model {spec.name!r} is registered by both {other!r} and {_name!r}")
                    # Checked here, once: a declaration its hooks contradict fails the listing
                    # with a message naming the hook, not a job later.
                    capabilities[spec.name] = resolve_capabilities(
                        spec.capabilities,
                        model=spec.name,
                        plugin=_name,
                        implements=lambda hook, _o=_owner: self._owner_implements(_o, hook),
                        needs_weights=spec.needs_weights,
                        input_kinds=tuple(dict.fromkeys(i.kind for i in spec.inputs)),
                    )
                    models[spec.name] = (spec, _owner)

                if self._trace:
                    _trace_before("arc_register_models", [impl], {})
                impl.function(register=register)
            self._models = models
            self._capabilities = capabilities
        return self._models

    def model_names(self) -> list[str]:
        return sorted(self._registry())

    def model(self, name: str) -> ModelSpec:
        try:
            return self._registry()[name][0]
        except KeyError:
            raise UnknownModelError(name, self.model_names()) from None

    def owner(self, model_name: str) -> object:
        self.model(model_name)
        return self._registry()[model_name][1]

    def stage(self, hook_name: str, model_name: str) -> Any:
        """A hook caller for one stage of one model.

        Who answers, in order:

        1. **Interceptors**: plain implementations from plugins that own no model (a step
           cache). Asked first, in pluggy's order (``tryfirst`` ones, then the most
           recently registered first, ``trylast`` ones last); the first that returns
           something other than None answers the stage, and the owner is not called.
        2. **The owner**: the plugin that registered the model, inside every wrapper
           (``wrapper=True``) from plugins that own no model — a profiler sees each call
           the owner makes, not the ones an interceptor answered.

        Implementations from plugins that own other models are never called for this one.
        """
        owner = self.owner(model_name)
        caller = getattr(self.hook, hook_name)
        impls = caller.get_hookimpls()
        if not any(impl.plugin is owner and not (impl.wrapper or impl.hookwrapper) for impl in impls):
            raise ArcFabricError(
                f"plugin {self.pm.get_name(owner)!r} registers model {model_name!r} but lacks {hook_name}"
            )
        owners = {id(o) for _, o in self._registry().values()}
        plain_others = [impl for impl in impls if impl.plugin is not owner and not (impl.wrapper or impl.hookwrapper)]
        interceptors = [impl for impl in plain_others if id(impl.plugin) not in owners]
        others = [impl.plugin for impl in plain_others]
        owned = caller if not others else self.pm.subset_hook_caller(hook_name, remove_plugins=others)
        if not interceptors:
            return owned
        # get_hookimpls lists in reverse call order: pluggy calls the last first.
        return _Intercepted(list(reversed(interceptors)), owned, hook_name, self._trace)

    def implements(self, hook_name: str, model_name: str) -> bool:
        """Whether the plugin owning ``model_name`` implements ``hook_name`` itself (a
        wrapper from another plugin does not count)."""
        return self._owner_implements(self.owner(model_name), hook_name)

    def _owner_implements(self, owner: object, hook_name: str) -> bool:
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        return any(impl.plugin is owner and not (impl.wrapper or impl.hookwrapper) for impl in impls)

    def optional_stage(self, hook_name: str, model_name: str) -> Any | None:
        """Like :meth:`stage`, or None when the owning plugin does not implement the hook."""
        return self.stage(hook_name, model_name) if self.implements(hook_name, model_name) else None

    def capabilities(self, model_name: str) -> Capabilities:
        """What a model can do (``contract.capabilities``): what its spec declares, the
        rest derived from the hooks its plugin implements (an autoregressive model extends
        and rewinds instead of editing), checked against them when the registry is built."""
        self.model(model_name)
        return self._capabilities[model_name]

    def describe_model(self, model_name: str) -> dict[str, Any]:
        """A model's description (``ModelSpec.describe``) with its capabilities and, beside
        them, ``operations``: every registered operation it takes (hand-off and those
        plugins add too, where the capabilities list the engine's own)."""
        spec = self.model(model_name)
        return {
            **spec.describe(),
            "capabilities": self.capabilities(model_name).describe(),
            "operations": self.operations_for(model_name),
            # The step caches it takes (params.cache): every one loaded, unless it refuses them.
            "caches": [] if spec.step_cache_refusal else list(self.caches()),
        }

    def operations_for(self, model_name: str) -> list[str]:
        """The registered operations ``model_name`` takes: those its capabilities list,
        in their order, then the others that apply to it in the registry's order."""
        capabilities = self.capabilities(model_name)
        applying = [name for name, op in self.operations().items() if op.applies_to(capabilities)]
        listed = [name for name in capabilities.operations if name in applying]
        return listed + [name for name in applying if name not in listed]

    # -- operations

    def operations(self) -> dict[str, Any]:
        """Every operation by name: the built-in ones (registered by
        ``arc_fabric_core.operations.builtin`` through the same hook as a plugin's, but
        never listed as a plugin), then the plugins'."""
        self._ensure_loaded()
        if self._operations is None:
            ops: dict[str, Any] = {}
            owners: dict[str, str] = {}
            builtin = importlib.import_module(BUILTIN_OPERATIONS)
            impls = [(BUILTIN_OPERATIONS, builtin.arc_register_operations)]
            impls += [(i.plugin_name, i.function) for i in self.pm.hook.arc_register_operations.get_hookimpls()]
            for owner, function in impls:

                def register(op: Any, _owner: str = owner) -> None:
                    name = getattr(op, "name", None)
                    if not isinstance(name, str) or not name.replace("-", "_").isidentifier():
                        raise ArcFabricError(f"{_owner}: an operation needs a name (letters, digits, _ and -)")
                    if name in ops:
                        raise ArcFabricError(f"operation {name!r} is registered twice ({_owner} registers it again)")
                    ops[name] = op
                    owners[name] = _owner

                function(register=register)
            self._operations, self._operation_owners = ops, owners
        return self._operations

    def operation(self, name: str) -> Any:
        ops = self.operations()
        if name not in ops:
            raise ArcFabricError(f"unknown operation {name!r}; known: {', '.join(ops)}")
        return ops[name]

    def operation_making(self, made: str) -> Any:
        """The operation whose sessions carry ``SessionDoc.operation == made``."""
        for op in self.operations().values():
            if op.makes == made:
                return op
        raise ArcFabricError(f"no operation makes sessions of kind {made!r} (is the plugin that adds it installed?)")

    def ui_extensions(self) -> list[Any]:
        """Every ``UiExtension`` the plugins register (``arc_register_ui``), by name; a name
        registered twice is refused, naming both plugins."""
        found: dict[str, tuple[Any, str]] = {}
        for impl in self.hook.arc_register_ui.get_hookimpls():

            def register(ext: Any, _owner: str = impl.plugin_name) -> None:
                if not isinstance(ext, UiExtension):
                    raise ArcFabricError(f"{_owner}: arc_register_ui takes a UiExtension, not {type(ext).__name__}")
                if ext.name in found:
                    raise ArcFabricError(
                        f"UI extension {ext.name!r} is registered by both {found[ext.name][1]!r} and {_owner!r}"
                    )
                found[ext.name] = (ext, _owner)

            impl.function(register=register)
        return [ext for ext, _ in found.values()]

    def caches(self) -> dict[str, tuple[Any, str]]:
        """Every step cache the plugins declare (``arc_register_caches``), by name: its
        ``CacheInfo`` and the plugin's name. A name declared twice is refused, naming both."""
        found: dict[str, tuple[Any, str]] = {}
        for impl in self.hook.arc_register_caches.get_hookimpls():

            def register(info: Any, _owner: str = impl.plugin_name) -> None:
                name = getattr(info, "name", None)
                if not isinstance(name, str) or not name:
                    raise ArcFabricError(f"{_owner}: arc_register_caches takes a CacheInfo with a name")
                if name in found:
                    raise ArcFabricError(f"step cache {name!r} is registered by both {found[name][1]!r} and {_owner!r}")
                found[name] = (info, _owner)

            impl.function(register=register)
        return found

    def config_searchpath(self) -> list[str]:
        paths: list[str] = []
        for result in self.hook.arc_config_searchpath():
            paths.extend(result or [])
        return paths

    def describe(self) -> list[dict[str, Any]]:
        """Installed plugins and their models, JSON-ready (``python -m arc_fabric_core plugins``)."""
        registry = self._registry()
        self.operations()  # who registered which
        caches = self.caches()
        out = []
        for name, plugin in sorted(self.pm.list_name_plugin(), key=lambda kv: kv[0]):
            if plugin is sys.modules.get(BUILTIN_CACHES):
                continue  # the core's own, as the built-in operations (its caches are the models')
            info = self._infos.get(name, PluginInfo(name, None, None))
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            models = [self.describe_model(spec.name) for spec, owner in registry.values() if owner is plugin]
            metrics: list[Any] = []
            if "arc_register_metrics" in hooks:
                others = [p for n, p in self.pm.list_name_plugin() if p is not plugin]
                self.pm.subset_hook_caller("arc_register_metrics", remove_plugins=others)(register=metrics.append)
            out.append(
                {
                    "name": name,
                    "package": info.package,
                    "version": info.version,
                    "hooks": hooks,
                    "models": models,
                    "metrics": [m.name for m in metrics],
                    "operations": [op for op, owner in self._operation_owners.items() if owner == name],
                    "caches": [cache for cache, (_, owner) in caches.items() if owner == name],
                }
            )
        return out


class _Intercepted:
    """A stage call asking the interceptors first, then the owner (:meth:`Plugins.stage`)."""

    def __init__(self, interceptors: list[Any], owner: Any, hook_name: str, trace: bool) -> None:
        self.interceptors, self.owner = interceptors, owner
        self.hook_name, self.trace = hook_name, trace

    def __call__(self, **kwargs: Any) -> Any:
        for impl in self.interceptors:
            # Called directly, not through pluggy: the trace is written here (as pluggy's
            # monitor writes it for the owner's call).
            if self.trace:
                _trace_before(self.hook_name, [impl], kwargs)
            result = impl.function(*(kwargs[name] for name in impl.argnames))
            if self.trace:
                answer = _brief(result) if result is not None else "None (passed on)"
                sys.stderr.write(f"[arc_fabric trace] {self.hook_name} <- {answer}\n")
            if result is not None:
                return result
        return self.owner(**kwargs)


def _brief(value: Any) -> str:
    """A short description of a hook argument for the trace (never a whole tensor)."""
    import torch

    if isinstance(value, torch.Tensor):
        return f"Tensor({'x'.join(map(str, value.shape)) or 'scalar'} {str(value.dtype).removeprefix('torch.')})"
    if isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
        return "{" + ", ".join(f"{k}: {_brief(v)}" for k, v in value.items()) + "}"
    if hasattr(value, "spec") and hasattr(value, "variant"):  # ModelRef
        return f"{value.spec.name}/{value.variant.name}"
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _trace_before(hook_name: str, hook_impls: list[Any], kwargs: dict[str, Any]) -> None:
    owners = ",".join(impl.plugin_name for impl in hook_impls)
    args = " ".join(f"{k}={_brief(v)}" for k, v in kwargs.items() if k != "components")
    sys.stderr.write(f"[arc_fabric trace] {hook_name} -> {owners} {args}\n")


def _trace_after(outcome: Any, hook_name: str, hook_impls: list[Any], kwargs: dict[str, Any]) -> None:
    exc = outcome.exception
    result = f"raised {type(exc).__name__}: {exc}" if exc is not None else _brief(outcome.get_result())
    sys.stderr.write(f"[arc_fabric trace] {hook_name} <- {result}\n")


_plugins: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugin manager; entry points load on first use."""
    global _plugins
    if _plugins is None:
        _plugins = Plugins()
    return _plugins


def reset_plugins() -> None:
    """Forget the process-wide manager (tests that change the environment use this)."""
    global _plugins
    _plugins = None


def plugins_with(plugin: object, model: str) -> Plugins:
    """The process-wide plugins when they hold ``model``, else ``plugin`` (the module that
    registers it) alone, registered by hand under the model's name: a plugin only on the
    path (a bare GPU image without entry points) still runs."""
    plugins = get_plugins()
    if model not in plugins.model_names():
        plugins = Plugins(load_entrypoints=False)
        plugins.register(plugin, name=model)
    return plugins
