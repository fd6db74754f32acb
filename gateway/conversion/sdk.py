"""Adapters: conversion between the provincial form of a message and a provider's own.

Shaped like a Kong plugin: an adapter is a class with a typed configuration model
(`Config`, validated when policies load, errors naming the field) and handler hooks
that run on the exchange path, in Envoy's order (request hooks on the way out, the
response hook on the way back):

    request(outbound, context)          canonical request -> provider's request
    response(answer, outbound, context) provider's answer (or error) -> canonical answer

Hooks are synchronous and pure CPU: everything they need (mappings, code lists, XML
namespaces) is compiled in `__init__`, once per configuration, never per exchange.
A hook refuses with `Problem` (problem+json to the caller, audited like any other).

Adapters are found by name: `passthrough` (built in), every sub-package of the
top-level `adapters` package that exposes `ADAPTER`, and every entry point in the
`lgsp.adapters` group, so a third party can ship one as its own package without
touching `gateway/`. See README "Adding an adapter".
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import pkgutil
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import orjson
import yaml
from multidict import CIMultiDict
from pydantic import BaseModel, ConfigDict, ValidationError

from gateway.conversion.mapping import vnencoding
from gateway.conversion.mapping.engine import CompiledMapping, Context, compile_mapping, map_strings
from gateway.conversion.mapping.vnencoding import Encoding

if TYPE_CHECKING:  # gateway.upstream needs the runtime tables, which need this module
    from gateway.upstream.client import UpstreamResponse

__all__ = [
    "Adapter",
    "AdapterConfig",
    "Context",
    "LegacyTextConfig",
    "OutboundRequest",
    "adapter_config_errors",
    "build_adapter",
    "json_object",
    "known_adapters",
    "load_mappings",
]


class AdapterConfig(BaseModel):
    """Base of adapter configuration models: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LegacyTextConfig(AdapterConfig):
    """For callers that still hold text in TCVN3 or VNI (REFERENCE §4): their strings are
    turned into Unicode NFC on the way in and, when the service asks for it, the
    answer's strings are encoded back on the way out."""

    legacy_input: Encoding | None = None
    legacy_output: Encoding | None = None

    def text_in(self, doc: Any) -> Any:
        if self.legacy_input is None:
            return map_strings(doc, _nfc)
        encoding = self.legacy_input
        return map_strings(doc, lambda t: vnencoding.decode(t, encoding))

    def text_out(self, doc: Any) -> Any:
        if self.legacy_output is None:
            return doc
        encoding = self.legacy_output
        return map_strings(doc, lambda t: vnencoding.encode(t, encoding))


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


@dataclass(slots=True)
class OutboundRequest:
    """What is sent to the provider: adapters may change every part."""

    method: str
    path: str  # appended to the service's upstream URL (raw, percent-encoded)
    query: str
    headers: CIMultiDict[str]
    body: bytes


C = TypeVar("C", bound=AdapterConfig)


class Adapter(Generic[C]):
    """Base class; `passthrough` is this class itself: both hooks return their input.
    A subclass names its configuration model twice: as `Config` (what the registry
    validates `adapter_config` with) and as the type parameter (what `self.config` is)."""

    name: ClassVar[str] = "passthrough"
    Config: ClassVar[type[AdapterConfig]] = AdapterConfig

    def __init__(self, config: C) -> None:
        self.config = config

    def request(self, outbound: OutboundRequest, context: Context) -> OutboundRequest:
        return outbound

    def response(
        self, answer: UpstreamResponse, outbound: OutboundRequest, context: Context
    ) -> UpstreamResponse:
        return answer


def json_object(body: bytes, what: str = "The request body") -> dict[str, Any]:
    """A caller's JSON object, or a 400 problem saying what is wrong with it."""
    from gateway.core.problems import INVALID_MESSAGE, Problem  # keeps this module light

    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise Problem(INVALID_MESSAGE, f"{what} is not JSON: {e}.") from None
    if not isinstance(value, dict):
        raise Problem(INVALID_MESSAGE, f"{what} must be a JSON object.")
    return value


@functools.cache
def _registry() -> dict[str, type[Adapter[Any]]]:
    found: dict[str, type[Adapter[Any]]] = {"passthrough": Adapter}
    try:
        package = importlib.import_module("adapters")
    except ImportError:  # installed without the bundled adapters
        package = None
    if package is not None:
        for module in pkgutil.iter_modules(package.__path__):
            if module.ispkg:
                cls = getattr(importlib.import_module(f"adapters.{module.name}"), "ADAPTER", None)
                if isinstance(cls, type) and issubclass(cls, Adapter):
                    found[cls.name] = cls
    for entry in importlib.metadata.entry_points(group="lgsp.adapters"):
        cls = entry.load()
        if isinstance(cls, type) and issubclass(cls, Adapter):
            found[cls.name] = cls
    return found


def known_adapters() -> frozenset[str]:
    return frozenset(_registry())


def adapter_config_errors(name: str, config: Mapping[str, Any]) -> list[str]:
    """Problems with a service's adapter configuration, each naming its field."""
    cls = _registry().get(name)
    if cls is None:
        return [f"adapter: unknown adapter {name!r}; installed: {sorted(_registry())}"]
    try:
        cls(cls.Config.model_validate(dict(config)))
    except ValidationError as e:
        return [
            f"adapter_config.{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in e.errors()
        ]
    except ValueError as e:
        return [f"adapter_config: {e}"]
    return []


@functools.lru_cache(maxsize=1024)
def _build(name: str, config_json: bytes) -> Adapter[Any] | None:
    cls = _registry()[name]
    if cls is Adapter:
        return None  # passthrough: nothing to run on the exchange path
    return cls(cls.Config.model_validate(orjson.loads(config_json)))


def build_adapter(name: str, config: Mapping[str, Any]) -> Adapter[Any] | None:
    """The adapter instance for a service (None for passthrough), compiled once per
    distinct configuration and reused across reloads."""
    return _build(name, orjson.dumps(dict(config), option=orjson.OPT_SORT_KEYS))


def load_mappings(folder: Path) -> dict[str, CompiledMapping]:
    """An adapter folder's `mappings/*.yaml`, compiled with its `codes/*.yaml` lists."""
    code_lists: dict[str, dict[str, str]] = {}
    for path in sorted((folder / "codes").glob("*.yaml")):
        table = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        code_lists[path.stem] = {str(k): str(v) for k, v in table.items()}
    mappings: dict[str, CompiledMapping] = {}
    for path in sorted((folder / "mappings").glob("*.yaml")):
        try:
            mappings[path.stem] = compile_mapping(
                yaml.safe_load(path.read_text(encoding="utf-8")), code_lists
            )
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    return mappings
