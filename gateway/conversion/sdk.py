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

import unicodedata
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import orjson
import yaml
from pydantic import BaseModel, ConfigDict

from gateway.conversion.mapping import vnencoding
from gateway.conversion.mapping.engine import CompiledMapping, Context, compile_mapping, map_strings
from gateway.conversion.mapping.vnencoding import Encoding
from gateway.core.messages import OutboundRequest, UpstreamResponse

__all__ = [
    "Adapter",
    "AdapterConfig",
    "Context",
    "LegacyTextConfig",
    "OutboundRequest",
    "json_object",
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
