"""The adapters a gateway knows, found by name, and built once per configuration and
content of their mapping files.

`passthrough` is built in; every sub-package of the top-level `adapters` package that
exposes `ADAPTER`, every folder of it with an `adapter.yaml` (a declared adapter, no
Python: gateway/conversion/declared.py), and every entry point of the `lgsp.adapters`
group, is found by the adapter's `name`, so a third party ships one as its own package
without touching `gateway/`.

An adapter's mapping files are the YAML of its folder's `mappings/` and `codes/` (what
`load_mappings` and `load_code_lists` read), a declared adapter's `adapter.yaml`, and a
Python adapter's `national.yaml` (`load_national`).
Their digest (`mapping_digest`) is part of the key an adapter instance is kept under, so
an edited mapping is compiled again at the next reload instead of the instance built
from the old one being reused; `policy apply` records the digest it validated with each
service (gateway/config/versions.py), so an edit alone is a change to apply, and a
reload sees it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import inspect
import pkgutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from gateway.conversion.declared import (
    DECLARATION,
    DeclaredAdapter,
    declared_adapter,
    read_declaration,
)
from gateway.conversion.sdk import NATIONAL_FILE, Adapter


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
        for root in package.__path__:
            for declaration in sorted(Path(root).glob(f"*/{DECLARATION}")):
                if not (declaration.parent / "__init__.py").exists():
                    declared = declared_adapter(declaration.parent.resolve())
                    found[declared.name] = declared
    for entry in importlib.metadata.entry_points(group="lgsp.adapters"):
        cls = entry.load()
        if isinstance(cls, type) and issubclass(cls, Adapter):
            found[cls.name] = cls
    return found


def known_adapters() -> frozenset[str]:
    return frozenset(_registry())


def declared_operations(name: str) -> list[tuple[str, str]]:
    """The endpoints (method, path under the service) a declared adapter declares, in the
    order of its `adapter.yaml`; none for any other adapter, whose paths are the caller's.

    Example:
        >>> declared_operations("land_registry")
        [('POST', '/thua-dat/tra-cuu')]
    """
    cls = _registry().get(name)
    if not (isinstance(cls, type) and issubclass(cls, DeclaredAdapter)):
        return []
    return [(op.method, op.path) for op in read_declaration(cls.folder).operations]


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


MAPPING_FOLDERS = ("mappings", "codes")


def _folder(name: str) -> Path | None:
    cls = _registry().get(name)
    if cls is None or cls is Adapter:
        return None
    if issubclass(cls, DeclaredAdapter):
        return cls.folder
    return Path(inspect.getfile(cls)).resolve().parent


def mapping_files(name: str) -> list[Path]:
    """The mapping files of an installed adapter, sorted: the YAML under its folder's
    `mappings/` and `codes/`, its `adapter.yaml` and its `national.yaml` (none for
    passthrough or an unknown name)."""
    folder = _folder(name)
    if folder is None:
        return []
    extra = [folder / DECLARATION, folder / NATIONAL_FILE]
    return sorted(
        [
            *(
                path
                for sub in MAPPING_FOLDERS
                for pattern in ("*.yaml", "*.yml")
                for path in (folder / sub).rglob(pattern)
                if path.is_file()
            ),
            *(path for path in extra if path.is_file()),
        ]
    )


def mapping_digest(name: str) -> str | None:
    """SHA-256 (hex) of an adapter's mapping files, names and contents; None when it has
    none (passthrough, an adapter built from code alone).

    Example:
        >>> mapping_digest("population")  # doctest: +SKIP
        '3f0c...'
    """
    files = mapping_files(name)
    if not files:
        return None
    root = _folder(name)
    assert root is not None
    h = hashlib.sha256()
    for path in files:
        data = path.read_bytes()
        # Length-prefixed, so no two different sets of files hash alike.
        for part in (path.relative_to(root).as_posix().encode(), data):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
    return h.hexdigest()


@functools.lru_cache(maxsize=1024)
def _build(name: str, config_json: bytes, digest: str | None) -> Adapter[Any] | None:
    # `digest` is only the key: the instance compiles the files as they are now, which
    # are the ones digested a moment ago.
    cls = _registry()[name]
    if cls is Adapter:
        return None  # passthrough: nothing to run on the exchange path
    return cls(cls.Config.model_validate(orjson.loads(config_json)))


def build_adapter(
    name: str, config: Mapping[str, Any], digest: str | None = None
) -> Adapter[Any] | None:
    """The adapter instance for a service (None for passthrough), compiled once per
    distinct configuration and mapping files and reused across reloads.

    Args:
        name: the adapter's name.
        config: the service's `adapter_config`.
        digest: `mapping_digest(name)` as read for this build (computed when not given).
    """
    if digest is None:
        digest = mapping_digest(name)
    return _build(name, orjson.dumps(dict(config), option=orjson.OPT_SORT_KEYS), digest)
