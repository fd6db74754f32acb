"""The adapter SDK (gateway/conversion/sdk.py) as adapters' one contract with the gateway:
everything it exports exists and is documented, every adapter says its version in
semantic versioning, and every bundled adapter has the same folder shape."""

from __future__ import annotations

import ast
import inspect
from typing import Any, ClassVar

import pytest

from gateway.conversion import sdk
from gateway.conversion.catalogue import _registry
from gateway.conversion.declared import DeclaredAdapter
from tests.conftest import REPO

ADAPTERS = REPO / "adapters"
BUNDLED = sorted(p.name for p in ADAPTERS.iterdir() if (p / "__init__.py").is_file())
DECLARED = sorted(
    p.name
    for p in ADAPTERS.iterdir()
    if (p / "adapter.yaml").is_file() and not (p / "__init__.py").exists()
)


def test_everything_exported_exists_and_is_in_the_reference() -> None:
    reference = sdk.__doc__ or ""
    for name in sdk.__all__:
        assert hasattr(sdk, name), name
        assert name in reference, f"{name} is exported but not in the SDK's docstring"


def test_what_the_sdk_defines_is_documented_with_an_example() -> None:
    defined = [
        value
        for name in sdk.__all__
        if (inspect.isfunction(value := getattr(sdk, name)) or inspect.isclass(value))
        and value.__module__ == sdk.__name__
    ]
    assert {v.__name__ for v in defined} >= {"Adapter", "json_object", "load_mappings"}
    for value in defined:
        doc = inspect.getdoc(value) or ""
        assert "Example" in doc, f"{value.__name__} has no example"
        if inspect.isfunction(value):
            assert "Returns:" in doc, f"{value.__name__} does not say what it returns"
    for hook in (sdk.Adapter.__init__, sdk.Adapter.request, sdk.Adapter.response):
        assert "Args:" in (inspect.getdoc(hook) or ""), hook.__name__


@pytest.mark.parametrize("version", ["1.0.0", "0.3.12", "2.0.0-rc.1", "1.0.0+20261202"])
def test_a_semantic_version_is_accepted(version: str) -> None:
    class Versioned(sdk.Adapter[sdk.AdapterConfig]):
        name: ClassVar[str] = "versioned"
        VERSION: ClassVar[str] = version

    assert Versioned.VERSION == version


@pytest.mark.parametrize(
    "version", ["1.0", "v1.0.0", "01.0.0", "1.0.0-", "", 1, "1.0.0-" + "x" * 30]
)
def test_an_adapter_without_a_semantic_version_fails_when_it_is_defined(version: Any) -> None:
    with pytest.raises(TypeError, match=r"Unversioned\.VERSION must be a semantic version"):

        class Unversioned(sdk.Adapter[sdk.AdapterConfig]):
            name: ClassVar[str] = "unversioned"
            VERSION: ClassVar[str] = version


def test_every_bundled_adapter_says_its_own_version() -> None:
    found = {
        cls.__module__.split(".")[1]: cls
        for cls in _registry().values()
        if cls.__module__.startswith("adapters.")
    }
    assert sorted(found) == BUNDLED
    # A folder with an adapter.yaml and no Python is a declared adapter, by its name.
    declared = [cls for cls in _registry().values() if issubclass(cls, DeclaredAdapter)]
    assert sorted(cls.folder.name for cls in declared) == DECLARED
    found.update({cls.name: cls for cls in declared})
    for cls in found.values():
        assert "VERSION" in vars(cls), f"{cls.__name__} inherits VERSION instead of saying it"
        assert sdk.check_version(cls.VERSION) == cls.VERSION


@pytest.mark.parametrize("name", BUNDLED)
def test_every_adapter_has_the_same_folder_shape(name: str) -> None:
    """__init__.py (docstring and re-export), adapter.py (config and handler), siblings,
    mappings/, codes/, tests/; and only the SDK of the gateway is imported."""
    folder = ADAPTERS / name
    for part in ("adapter.py", "mappings", "codes", "tests"):
        assert (folder / part).exists(), f"adapters/{name}/{part}"
    init = ast.parse((folder / "__init__.py").read_text(encoding="utf-8"))
    assert ast.get_docstring(init)
    code = init.body[1:]
    assert len(code) <= 3 and all(isinstance(s, (ast.ImportFrom, ast.Assign)) for s in code)
    assert any(isinstance(s, ast.ImportFrom) and s.module == "adapter" for s in code)
    for module in folder.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.startswith("gateway"):
                    assert node.module == "gateway.conversion.sdk", f"{module.name}: {node.module}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("gateway") for a in node.names), module.name
