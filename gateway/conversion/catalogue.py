"""The adapters a gateway knows, found by name, and built once per configuration.

`passthrough` is built in; every sub-package of the top-level `adapters` package that
exposes `ADAPTER`, and every entry point of the `lgsp.adapters` group, is found by the
adapter's `name`, so a third party ships one as its own package without touching
`gateway/`."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import pkgutil
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError

from gateway.conversion.sdk import Adapter


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
