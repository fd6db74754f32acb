"""Declared adapters: a folder of YAML, no Python.

A folder under `adapters/` with an `adapter.yaml` (and no `ADAPTER` class) is an adapter
of its own, found by the `name` it declares: the catalogue makes a `DeclaredAdapter`
subclass for it, so a policy's `adapter: land_registry` selects the folder, and its
`mappings/`, `codes/` and `adapter.yaml` are the files whose digest a reload follows.
The declaration (docs/adapters.md "Adding an adapter")::

    name: land_registry                       # what a policy's `adapter:` names
    title: the land registry's parcel lookup  # how messages name the service
    requires: [agency_code]                   # adapter_config keys that must be given
    soap: {version: "1.1"}                    # SOAP 1.1 or 1.2 (absent: plain XML)
    operations:                               # the canonical endpoints, each one call
      - method: POST
        path: /thua-dat/tra-cuu               # under the service's address
        upstream_path: /ws                    # under its upstream_path (default: path)
        action: "urn:vn:gov:tnmt:dat-dai:1.0/TraCuuThuaDat"   # SOAPAction
        request: parcel-request               # mappings/parcel-request.yaml, xml side: to
        response: parcel                      # mappings/parcel.yaml, xml side: from
    national: {}                              # the platform's conventions, as they are
    faults:                                   # first match wins
      - {code: Client, outcome: answer, problem: invalid-message}
      - {code: Server, outcome: failure, problem: upstream-bad-response}

`national:` is the platform's conventions (gateway/conversion/mapping/national.py, over
its defaults): the request id's length and what a longer one becomes (shortened or
refused), its echo, the agency code, and the outcome codes (`MaLoi`): a fault whose
detail, or an answer whose document, carries a code of the table is that code's outcome
and problem, before any fault rule. The mappings place them: `{national: request_id,
to: /MaYeuCau}`, `{national: agency_code, to: /MaDonVi}`, `{from: /MaYeuCau, echo:
national}`.

A fault's `outcome` is what the upstream's circuit breaker hears (`Adapter.upstream_failed`):
`answer`, the provider answered (never retried, never opens the breaker), or `failure`.
`problem` is what the caller gets. A fault no rule matches is read the SDK's general way:
a Client/Sender fault is the caller's (an answer, invalid-message 400), any other the
provider failing (upstream-bad-response 502). `detail` matches elements of the fault's
detail by local name and text; `code: Client` also matches SOAP 1.2's Sender, `Server`
its Receiver. The `VERSION` file of the folder is the adapter's version.

`settings:` in `adapter_config` gives the mappings values for `{setting: name}` rules.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import orjson
import yaml
from lxml import etree
from multidict import CIMultiDict
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.conversion.mapping.national import (
    PROBLEMS,
    National,
    Outcome,
    ProblemSlug,
    national_from,
)
from gateway.conversion.sdk import (
    INVALID_MESSAGE,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    UPSTREAM_BAD_RESPONSE,
    Adapter,
    AgencyCode,
    CompiledMapping,
    Context,
    LegacyTextConfig,
    MappingError,
    OutboundRequest,
    Problem,
    ProblemType,
    SoapFault,
    SoapFaultAnswer,
    SoapVersion,
    UpstreamResponse,
    check_version,
    compile_mapping,
    json_object,
    load_code_lists,
    soap_caller_fault,
    soap_content_type,
    soap_fault_of,
    soap_fault_to_problem,
)

__all__ = [
    "DECLARATION",
    "Declaration",
    "DeclaredAdapter",
    "DeclaredConfig",
    "declared_adapter",
]

DECLARATION = "adapter.yaml"
NAME = r"^[a-z][a-z0-9_]*$"  # an adapter's name
JSON = "application/json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SoapSpec(_Strict):
    version: SoapVersion


class OperationSpec(_Strict):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    path: str = Field(pattern=r"^/[A-Za-z0-9._~/-]*$")
    upstream_path: str | None = Field(None, pattern=r"^/[A-Za-z0-9._~/-]*$")
    action: str | None = None
    request: str
    response: str


class FaultSpec(_Strict):
    code: str | None = None  # "Client", "Server", ... or "{uri}local"
    subcode: str | None = None
    detail: dict[str, str] = {}  # element local name -> its text
    outcome: Literal["answer", "failure"]
    problem: ProblemSlug


class Declaration(_Strict):
    """An `adapter.yaml`, validated."""

    name: str = Field(pattern=NAME)
    title: str = Field(min_length=1, max_length=200)
    requires: list[Literal["agency_code"]] = []
    soap: SoapSpec | None = None
    operations: list[OperationSpec] = Field(min_length=1)
    faults: list[FaultSpec] = []
    # The national platform's conventions (gateway/conversion/mapping/national.py): {} for
    # the platform's as they are; absent for a service that does not follow them.
    national: dict[str, Any] | None = None


class DeclaredConfig(LegacyTextConfig):
    """The `adapter_config` of a declared adapter: the agency code the mappings send
    (`{setting: agency_code}`), other settings they read, and legacy text."""

    agency_code: AgencyCode | None = None
    settings: dict[str, str | int | bool] = Field(default_factory=dict)


def read_declaration(folder: Path) -> Declaration:
    """The folder's `adapter.yaml`, validated; ValueError naming the file and field."""
    path = folder / DECLARATION
    try:
        declaration = Declaration.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValidationError as e:
        fields = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise ValueError(f"{path}: {fields}") from None
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: {e}") from None
    if declaration.national is not None:
        national_from(declaration.national, str(path))  # checked at load, naming the field
    return declaration


def read_name(folder: Path) -> str:
    """The `name` the folder's `adapter.yaml` declares; ValueError naming the file."""
    path = folder / DECLARATION
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: {e}") from None
    name = document.get("name") if isinstance(document, dict) else None
    if not isinstance(name, str) or not re.fullmatch(NAME, name):
        raise ValueError(f"{path}: name: give the adapter's name ({NAME})")
    return name


@dataclasses.dataclass(frozen=True, slots=True)
class _Operation:
    spec: OperationSpec
    upstream_path: str
    request: CompiledMapping
    response: CompiledMapping


class DeclaredAdapter(Adapter[DeclaredConfig]):
    """The hooks every declared adapter runs; the catalogue subclasses it per folder."""

    Config: ClassVar[type[DeclaredConfig]] = DeclaredConfig
    folder: ClassVar[Path]

    def __init__(self, config: DeclaredConfig) -> None:
        super().__init__(config)
        self.declaration = spec = read_declaration(self.folder)
        missing = [k for k in spec.requires if getattr(config, k) is None]
        if missing:
            raise ValueError(f"{', '.join(missing)} is required by {self.folder / DECLARATION}")
        settings = {**config.settings, "agency_code": config.agency_code}
        self.national: National | None = (
            national_from(spec.national, str(self.folder / DECLARATION))
            if spec.national is not None
            else None
        )
        code_lists = load_code_lists(self.folder)
        self.operations = [self._operation(op, code_lists, settings) for op in spec.operations]
        self.by_upstream = {op.upstream_path: op for op in self.operations}

    def _operation(
        self, op: OperationSpec, code_lists: dict[str, dict[str, str]], settings: dict[str, Any]
    ) -> _Operation:
        request = self._mapping(op.request, "to", code_lists, settings)
        response = self._mapping(op.response, "from", code_lists, settings)
        return _Operation(op, op.upstream_path or op.path, request, response)

    def _mapping(
        self, name: str, side: str, code_lists: dict[str, dict[str, str]], settings: dict[str, Any]
    ) -> CompiledMapping:
        path = self.folder / "mappings" / f"{name}.yaml"
        try:
            mapping = compile_mapping(
                yaml.safe_load(path.read_text(encoding="utf-8")),
                code_lists,
                settings,
                self.national,
            )
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise ValueError(f"{path}: {e}") from None
        xml = mapping.xml
        soap = self.declaration.soap
        if xml is None or xml.spec.side != side:
            raise ValueError(f"{path}: needs an xml: block with side: {side}")
        if (soap.version if soap else None) != xml.spec.envelope:
            raise ValueError(
                f"{path}: xml.envelope is {xml.spec.envelope!r}; {DECLARATION} declares "
                f"SOAP {soap.version if soap else 'none'}"
            )
        return mapping

    # -- canonical request -> the provider's -----------------------------------------------

    def request(self, outbound: OutboundRequest, context: Context) -> OutboundRequest:
        op = self._operation_at(outbound)
        if self.national is not None:  # longer: refuse, before anything is converted
            self.national.check_request_id(context.request_id)
        message = self.config.text_in(json_object(outbound.body))
        try:
            body = op.request.to_xml(message, context)
        except MappingError as e:
            raise Problem(INVALID_MESSAGE, f"{self._named(context)}: {e}.") from None
        headers = CIMultiDict(outbound.headers)
        headers.popall("Content-Encoding", None)
        soap = self.declaration.soap
        if soap is not None:
            headers.update(soap_content_type(soap.version, op.spec.action))
        else:
            headers["Content-Type"] = "application/xml; charset=utf-8"
        headers["Accept"] = headers["Content-Type"].split(";")[0]
        return OutboundRequest(op.spec.method, op.upstream_path, "", headers, body)

    def _operation_at(self, outbound: OutboundRequest) -> _Operation:
        path = outbound.path.rstrip("/") or "/"
        at = [op for op in self.operations if op.spec.path == path]
        if not at:
            paths = ", ".join(f"{op.spec.method} {op.spec.path}" for op in self.operations)
            raise Problem(
                NOT_FOUND,
                f"{self.declaration.title} has {paths}; there is nothing at {outbound.path!r}.",
            )
        for op in at:
            if op.spec.method == outbound.method.upper():
                return op
        allowed = ", ".join(op.spec.method for op in at)
        raise Problem(
            METHOD_NOT_ALLOWED,
            f"{path} takes {allowed}, not {outbound.method}.",
            headers={"Allow": allowed},
        )

    # -- the provider's answer -> canonical -------------------------------------------------

    def upstream_failed(self, answer: UpstreamResponse, outbound: OutboundRequest) -> bool | None:
        """A fault's declared outcome, or the national outcome code's; None (the statuses
        decide) for what is neither."""
        fault = soap_fault_of(answer.body) if self.declaration.soap else None
        if fault is not None:
            return self._rule(fault)[0] == "failure"
        if self.national is None:
            return None
        op = self.by_upstream.get(outbound.path) or self.operations[0]
        try:
            document = self._xml(op).read(answer.body)
        except ValueError:  # not XML, another root, a fault: the statuses decide
            return None
        return self.national.failed(document, answer.status)

    def response(
        self, answer: UpstreamResponse, outbound: OutboundRequest, context: Context
    ) -> UpstreamResponse:
        op = self.by_upstream.get(outbound.path) or self.operations[0]
        title = self._named(context)
        try:
            data = self._xml(op).read(answer.body)
            status = self._outcome_status(data, answer.status, title)
            document = op.response.apply(data, context)
        except SoapFaultAnswer as e:
            raise self._problem(e.fault, title) from None
        except ValueError as e:  # MappingError, InvalidXML, UnsafeXML
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"{title} answered HTTP {answer.status} with what cannot be read: {e}.",
            ) from None
        try:
            body = orjson.dumps(self.config.text_out(document))
        except ValueError as e:  # legacy_output cannot carry a character of the answer
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"The answer cannot be given in {self.config.legacy_output}: {e}.",
            ) from None
        return dataclasses.replace(
            answer, status=status, headers=CIMultiDict({"Content-Type": JSON}), body=body
        )

    @staticmethod
    def _xml(op: _Operation) -> Any:
        assert op.response.xml is not None  # checked when the mapping was compiled
        return op.response.xml

    def _named(self, context: Context) -> str:
        """How messages name the service: the declaration's title and, when the
        exchange says, the service's address (provider/code/version)."""
        title = self.declaration.title
        return f"{title} ({context.service})" if context.service else title

    def _outcome_status(self, data: dict[str, Any], http_status: int, title: str) -> int:
        """The caller's status for an answer that is no fault: by its national outcome
        code when it has one (a refusal raises its problem), else 200 for a 2xx."""
        national = self.national
        if national is not None and national.code_in(data) is not None:
            outcome = national.outcome(data, http_status)
            if not outcome.answered:
                raise national.problem(outcome, http_status, title)
            return outcome.spec.caller_status
        if not 200 <= http_status < 300:
            raise Problem(UPSTREAM_BAD_RESPONSE, f"{title} answered HTTP {http_status}.")
        return 200

    def _rule(self, fault: SoapFault) -> tuple[str, ProblemType]:
        """The fault's outcome and problem: by its national outcome code when the table
        has it, else by the declared fault rules, else the general way."""
        code = self._fault_code(fault)
        if code is not None:
            spec = code.spec
            outcome = spec.outcome or ("answer" if soap_caller_fault(fault) else "failure")
            return outcome, PROBLEMS[spec.problem or "upstream-bad-response"]
        for rule in self.declaration.faults:
            if _matches(rule, fault):
                return rule.outcome, PROBLEMS[rule.problem]
        if soap_caller_fault(fault):
            return "answer", INVALID_MESSAGE
        return "failure", UPSTREAM_BAD_RESPONSE

    def _fault_code(self, fault: SoapFault) -> Outcome | None:
        """The national outcome of a fault whose detail carries a code of the table (a
        refusal: a code that would be an answer is no fault's), or None."""
        national = self.national
        if national is None or fault.detail is None:
            return None
        found = _detail(fault)
        code = national.code_in(found)
        if code is None or code not in national.spec.codes:
            return None
        outcome = national.outcome(found, 500)
        return outcome if not outcome.answered else None

    def _problem(self, fault: SoapFault, title: str) -> Problem:
        general = soap_fault_to_problem(fault, service=title)
        ptype = self._rule(fault)[1]
        return Problem(ptype, general.detail, **general.extensions)


# A declaration's codes hold for both versions: Client is SOAP 1.2's Sender, Server its Receiver.
_SAME_CODE = {"Sender": "Client", "Receiver": "Server"}


def _matches(rule: FaultSpec, fault: SoapFault) -> bool:
    code = _SAME_CODE.get(fault.code, fault.code)
    if rule.code is not None and _SAME_CODE.get(rule.code, rule.code) != code:
        return False
    if rule.subcode is not None and rule.subcode != fault.subcode:
        return False
    if not rule.detail:
        return True
    if fault.detail is None:
        return False
    found = _detail(fault)
    return all(found.get(name) == value for name, value in rule.detail.items())


def _detail(fault: SoapFault) -> dict[str, str]:
    """The elements of a fault's detail, by local name, with their text."""
    if fault.detail is None:
        return {}
    return {
        etree.QName(e).localname: (e.text or "").strip()
        for e in fault.detail.iter()
        if isinstance(e.tag, str)
    }


def declared_adapter(folder: Path) -> type[DeclaredAdapter]:
    """The adapter class of a declared folder, named by its declaration, versioned by its
    `VERSION` file.

    Args:
        folder: a folder holding `adapter.yaml`.
    Returns:
        A `DeclaredAdapter` subclass; its instances compile the folder's files.
    Raises:
        ValueError: the declaration has no valid name, naming the file (the rest is
            checked by each instance).
        TypeError: `VERSION` is missing or not semantic versioning.

    Example:
        >>> declared_adapter(Path("adapters/land_registry")).name
        'land_registry'
    """
    # Only the name here, when the catalogue is built: the rest is checked by each
    # instance (at every configuration load), so a broken declaration fails the services
    # that use it, naming them, and not every service of the policy.
    name = read_name(folder)
    try:
        version = (folder / "VERSION").read_text(encoding="utf-8").strip()
    except OSError:
        version = ""
    check_version(version, str(folder / "VERSION"))
    attributes = {"name": name, "VERSION": version, "folder": folder}
    return type(f"Declared_{name}", (DeclaredAdapter,), attributes)
