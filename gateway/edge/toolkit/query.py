"""Query parameters as pydantic models: one model per route, which both checks a request's
query string and describes it in the route's OpenAPI `parameters`.

A model refuses what it does not declare (`extra="forbid"`): a misspelt filter must not
silently widen a search or a change. Its types are strict: `Flag` is `true` or `false`
(any case, as Confluent's clients send `False`), `WholeNumber` is digits with the bounds
the field gives, and each refusal is a 400 `invalid-parameter` problem that names the
parameter, says what it takes and what it got.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Strict, ValidationError
from pydantic_core import PydanticCustomError

from gateway.core.problems import INVALID_PARAMETER, Problem

__all__ = [
    "Flag",
    "NoQuery",
    "OptionalText",
    "QueryModel",
    "WholeNumber",
    "invalid_parameter",
    "parse_query",
    "query_parameters",
]

Q = TypeVar("Q", bound="QueryModel")

# Long enough for any id; refused values are quoted back, so long ones are cut.
_QUOTE_CHARS = 60
_INTEGER = re.compile(r"-?[0-9]{1,18}")


class QueryModel(BaseModel):
    """The base of every route's query model: unknown parameters are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoQuery(QueryModel):
    """The query of a route that takes no parameters."""


def _flag(value: object) -> object:
    if isinstance(value, str):
        if value.lower() == "true":
            return True
        if value.lower() == "false":
            return False
        raise PydanticCustomError("flag", "true or false")
    return value


def _whole_number(value: object) -> object:
    if isinstance(value, str):
        if not _INTEGER.fullmatch(value):
            raise PydanticCustomError("whole_number", "a whole number")
        return int(value)
    return value


def _text(value: object) -> object:
    # An empty value (`?client=`) is no value: it filters nothing, as it always did.
    return None if value == "" else value


# `true` or `false`, nothing else (not 1, yes, on): the OpenAPI type is boolean.
Flag = Annotated[bool, Strict(), BeforeValidator(_flag)]
# Digits, optionally signed; bounds come from the field (`Field(ge=1, le=1000)`).
WholeNumber = Annotated[int, Strict(), BeforeValidator(_whole_number)]
# A string where an empty value means "not given".
OptionalText = Annotated[str | None, BeforeValidator(_text)]


def invalid_parameter(name: str, message: str) -> Problem:
    """The 400 problem for one query parameter, named in `parameter` and in the detail.

    Args:
        name: the parameter, as it is spelt in the query string.
        message: what it takes, to follow "name: " (e.g. "must be later than since").

    Returns:
        a `Problem` to raise; a model's own validator may raise it too, for checks that
        span parameters (pydantic lets exceptions other than ValueError through).

    Example:
        >>> invalid_parameter("until", "must be later than since").detail
        'until: must be later than since'
    """
    return Problem(INVALID_PARAMETER, f"{name}: {message}", parameter=name)


def parse_query(model: type[Q], request: web.Request) -> Q:
    """The request's query string as `model`, or a 400 naming the first wrong parameter.

    Args:
        model: the route's query model (a `QueryModel`).
        request: the request; its method and path are named when a parameter is unknown.

    Returns:
        the validated model.

    Raises:
        Problem: `invalid-parameter`, for an unknown, repeated or ill-typed parameter.

    Example:
        >>> class Page(QueryModel):
        ...     limit: WholeNumber = Field(50, ge=1, le=1000)
        >>> parse_query(Page, request).limit  # GET ...?limit=20
        20
    """
    query = request.query
    for name in query:
        if len(query.getall(name)) > 1:
            raise invalid_parameter(name, "given more than once; each parameter takes one value")
    try:
        return model.model_validate(dict(query))
    except ValidationError as e:
        raise _refusal(model, e, query, f"{request.method} {request.path}") from None


def _refusal(
    model: type[QueryModel], e: ValidationError, query: Mapping[str, str], where: str
) -> Problem:
    errors = e.errors(include_url=False)
    # A misspelt name explains the rest: report unknown parameters first.
    errors.sort(key=lambda err: err["type"] != "extra_forbidden")
    err = errors[0]
    loc = err["loc"]
    if not loc or not isinstance(loc[0], str):
        return Problem(INVALID_PARAMETER, str(err["msg"]).removeprefix("Value error, "))
    name = loc[0]
    if err["type"] == "extra_forbidden":
        takes = ", ".join(sorted(model.model_fields)) or "no parameters"
        return invalid_parameter(name, f"not a parameter of {where}; it takes {takes}")
    given = query.get(name, "")
    if err["type"] == "value_error":  # the field's own validator said what is wrong
        said = str(err["msg"]).removeprefix("Value error, ")
        return invalid_parameter(name, f"{said} (got {_quote(given)})")
    expected = _expected(_properties(model).get(name, {})) or str(err["msg"])
    return invalid_parameter(name, f"{expected}, not {_quote(given)}")


def _quote(value: str) -> str:
    return repr(value if len(value) <= _QUOTE_CHARS else value[:_QUOTE_CHARS] + "…")


def _expected(schema: Mapping[str, Any]) -> str:
    """What a parameter takes, said from its JSON schema."""
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    if "const" in schema:
        return f"only {schema['const']}"
    kind = schema.get("type")
    if kind == "boolean":
        return "true or false"
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            return f"a whole number from {low} to {high}"
        if low is not None:
            return f"a whole number of at least {low}"
        return "a whole number"
    if kind == "string":
        if "maxLength" in schema:
            return f"at most {schema['maxLength']} characters"
        if "pattern" in schema:
            return f"text matching {schema['pattern']}"
    return ""


_SCHEMAS: dict[type[QueryModel], dict[str, Any]] = {}


def _properties(model: type[QueryModel]) -> dict[str, dict[str, Any]]:
    """The model's JSON schema properties, an optional one as its non-null member."""
    if model not in _SCHEMAS:
        _SCHEMAS[model] = {
            name: _without_null(prop)
            for name, prop in model.model_json_schema().get("properties", {}).items()
        }
    return _SCHEMAS[model]


# Bounds on an optional field (`WholeNumber | None = Field(None, ge=0)`) apply after the
# validator, and pydantic then names them as in Python: said here as JSON Schema says them.
_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def _without_null(prop: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(prop)
    members = out.get("anyOf")
    if isinstance(members, list):
        real = [m for m in members if m != {"type": "null"}]
        if len(real) == 1:
            del out["anyOf"]
            out = {**real[0], **out}
    if out.get("default", ...) is None:
        del out["default"]
    return {_BOUNDS.get(k, k): v for k, v in out.items()}


def query_parameters(model: type[QueryModel]) -> list[dict[str, Any]]:
    """The OpenAPI 3.1 `parameters` (in: query) of a query model.

    Each parameter's schema is the field's JSON schema (`type`, `minimum`, `maximum`,
    `pattern`, `enum`, `default`), its description the field's; an optional field is
    described by its non-null type, as a query string has no null.

    Args:
        model: the route's query model.

    Returns:
        one parameter object per field, in the model's field order.

    Example:
        >>> query_parameters(Page)
        [{'name': 'limit', 'in': 'query', 'required': False,
          'schema': {'type': 'integer', 'minimum': 1, 'maximum': 1000, 'default': 50}}]
    """
    required = set(model.model_json_schema().get("required", []))
    parameters: list[dict[str, Any]] = []
    for name, prop in _properties(model).items():
        schema = {k: v for k, v in prop.items() if k not in ("title", "description")}
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
        if "description" in prop:
            parameter["description"] = prop["description"]
        parameter["schema"] = schema
        parameters.append(parameter)
    return parameters
