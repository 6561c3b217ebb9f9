"""Small typed registries, one per plugin kind, plus class-spec resolution.

Every plugin kind (datasets, base models, encoders, decoders, losses, and later
straggler models) has one :class:`Registry`. Entries are registered under the
name that configs and result tables use verbatim::

    @register_model("base-mlp")
    class BaseMLP(nn.Module): ...

    create_model("base-mlp", num_classes=10, input_shape=(1, 28, 28))

Classes that are not registered enter through a *class-spec*, a mapping with a
``"cls"`` key holding an import path and the constructor's keyword arguments::

    {"cls": "my_pkg.models.MyNet", "width": 64}

A class-spec imports and runs code, so it is taken from the command line and the user's own files
only. A config read back from an experiment (a table's ``config_json``, a run folder's
``config.json``) passes :func:`check_stored_config` first: a class-spec there is refused unless the
user trusts the experiment's authors (``--trust-code``, :func:`trusting_stored_code`); see
docs/security.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import inspect
import json
import logging
from typing import Any, Callable, Dict, Generic, Iterator, List, Mapping, Tuple, TypeVar, Union

from .errors import UsageError, choices_hint

T = TypeVar("T")

_ALL: Dict[str, "Registry"] = {}


def all_registries() -> Dict[str, "Registry"]:
    """Every registry built so far, by key, in creation order. Registries live in the modules of
    their floor; a caller that wants them all imports those modules first (``parity-ray list`` does)."""
    return dict(_ALL)

Spec = Union[str, Mapping[str, Any]]


class Registry(Generic[T]):
    """A name -> entry mapping for one kind of named choice, with the call contract of its entries.

    ``kind`` names one entry in messages ("serving mode"); ``key`` names the whole registry where
    registries are listed (``parity-ray list``, its ``--json`` keys: "modes"); ``contract`` states
    what an entry is and how the platform calls it (arguments, return value), the one text a plugin
    author reads. Registration order is kept (:meth:`in_order`): a module registers its built-ins
    in the order defaults and reports should present them.

    Every registry built is indexed (:func:`all_registries`), so tools can list and test them all.
    """

    def __init__(self, kind: str, key: str, contract: str):
        if not contract.strip():
            raise ValueError(f"registry '{key}' needs its call contract")
        self.kind, self.key = kind, key
        self.contract = " ".join(contract.split())
        self._entries: Dict[str, T] = {}
        if key in _ALL and _ALL[key] is not self:
            raise ValueError(f"a registry keyed '{key}' already exists")
        _ALL[key] = self

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; names must be unique."""

        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._entries[name] = obj
            try:
                setattr(obj, "registry_name", name)
            except (AttributeError, TypeError):
                pass
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The entry called ``name``; a :class:`UsageError` listing choices otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            raise UsageError(
                f"unknown {self.kind} '{name}'; {choices_hint(name, self._entries)}"
            ) from None

    def names(self) -> List[str]:
        """Every registered name, sorted (what listings and messages show)."""
        return sorted(self._entries)

    def in_order(self) -> List[str]:
        """Every registered name in registration order: the order defaults and reports present them in."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def create(self, spec: Spec, **context: Any) -> Any:
        """Instantiate a registered name or a class-spec.

        ``context`` holds what the platform knows (``num_classes``, ``k``, ...);
        each value is passed only if the constructor accepts that parameter, so
        user classes need not take arguments they do not use. Explicit class-spec
        kwargs win over context.
        """
        factory, kwargs = self.resolve(spec)
        return call_with_accepted(factory, {**context, **kwargs}, required=kwargs)

    def resolve(self, spec: Spec):
        """``(factory, explicit_kwargs)`` for a registered name or class-spec."""
        spec = parse_spec(spec)
        if isinstance(spec, str):
            return self.get(spec), {}
        kwargs = dict(spec)
        path = kwargs.pop("cls")
        return import_object(path, self.kind), kwargs


def parse_spec(spec: Spec) -> Spec:
    """Accept a name, a class-spec mapping, or a class-spec written as JSON text."""
    if isinstance(spec, str) and spec.lstrip().startswith("{"):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise UsageError(f"class-spec is not valid JSON ({exc.msg}): {spec}") from None
    if isinstance(spec, Mapping):
        if "cls" not in spec or not isinstance(spec["cls"], str):
            raise UsageError(
                f"class-spec {dict(spec)} needs a 'cls' key holding 'package.module.Class'"
            )
        return dict(spec)
    if not isinstance(spec, str):
        raise UsageError(f"expected a registered name or a class-spec, got {spec!r}")
    return spec


def spec_name(spec: Spec) -> str:
    """The name a spec is recorded under in tables: the registry name or the import path."""
    spec = parse_spec(spec)
    return spec if isinstance(spec, str) else spec["cls"]


def import_object(path: str, kind: str = "object") -> Any:
    """Import ``package.module.Name``; a clear :class:`UsageError` when that fails."""
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise UsageError(f"class-spec 'cls' must be 'package.module.Class', got '{path}'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import module '{module_name}' for {kind} '{path}': {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UsageError(f"module '{module_name}' has no attribute '{attr}' (from {kind} '{path}')") from None


def call_with_accepted(factory: Callable, kwargs: Mapping[str, Any], required: Mapping[str, Any] = ()):
    """Call ``factory`` with the subset of ``kwargs`` its signature accepts.

    Keys in ``required`` must be accepted; an unknown one is a usage error.
    """
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return factory(**kwargs)
    takes_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if takes_var_kw:
        return factory(**kwargs)
    unknown = sorted(set(required) - set(params))
    if unknown:
        name = getattr(factory, "__qualname__", repr(factory))
        raise UsageError(
            f"{name} does not take argument(s) {', '.join(unknown)}; "
            f"valid choices: {', '.join(p for p in params if p != 'self')}"
        )
    return factory(**{k: v for k, v in kwargs.items() if k in params})


_TRUST_STORED_CODE = contextvars.ContextVar("parity_ray_trust_stored_code", default=False)


@contextlib.contextmanager
def trusting_stored_code(trust: bool = True) -> Iterator[None]:
    """Within the block, class-specs read from stored configs are imported (``--trust-code``): only for
    experiments whose authors the user trusts as they trust their own code."""
    token = _TRUST_STORED_CODE.set(bool(trust))
    try:
        yield
    finally:
        _TRUST_STORED_CODE.reset(token)


def stored_class_specs(config: Mapping[str, Any]) -> List[Tuple[str, str]]:
    """``(config key, import path)`` of every class-spec in a config (mappings or JSON text)."""
    found = []
    for key, value in config.items():
        if isinstance(value, str) and value.lstrip().startswith("{"):
            try:
                value = json.loads(value)
            except ValueError:
                continue
        if isinstance(value, Mapping) and "cls" in value:
            found.append((str(key), str(value["cls"])))
    return found


def check_stored_config(config: Union[str, Mapping[str, Any], None], where: str) -> None:
    """Refuse a stored config that names code to import, unless inside :func:`trusting_stored_code`.

    ``config`` is the config or its JSON text (a table's ``config_json``); text that is not a JSON
    object names nothing to import (whatever reads it next refuses it on its own terms). ``where``
    names the config's source for the message (say "run 'r1' of experiment 'results/q1'").
    Registered names are always fine: they resolve to the platform's own plugins.
    """
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            return
    if not isinstance(config, Mapping):
        return
    specs = stored_class_specs(config)
    if not specs:
        return
    named = ", ".join(f"{key} {{'cls': {path!r}}}" for key, path in specs)
    if not _TRUST_STORED_CODE.get():
        raise UsageError(f"{where} names code to import ({named}); a class-spec read from an experiment is not run: "
                         f"pass --trust-code only if you trust whoever wrote it as you trust your own code")
    logging.getLogger("parity_ray").warning(f"--trust-code: {where} imports {', '.join(path for _k, path in specs)}")
