"""Safe XML parsing (gateway.core.safexml), JSON <-> XML conversion and SOAP envelopes
(gateway.conversion.mapping).

Hostile documents must be refused up front, with a message a person can act on, and
without building big trees: memory is checked with tracemalloc (Python allocations)
and, in a fresh process, with the peak RSS (libxml2's own allocations). No timings.
"""

from __future__ import annotations

import base64
import re
import socket
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.conversion.mapping.soap import (
    SOAP11,
    SOAP12,
    SoapFault,
    content_type,
    envelope,
    fault_envelope,
    fault_to_problem,
    parse_envelope,
)
from gateway.conversion.mapping.xml import XSI, data_to_xml, to_bytes, xml_to_data
from gateway.core.problems import INVALID_MESSAGE, UPSTREAM_BAD_RESPONSE
from gateway.core.safexml import InvalidXML, UnsafeXML, hardened_parser, parse_xml

QCVN = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
MB = 1024 * 1024

# --- hostile documents ------------------------------------------------------------------


def billion_laughs() -> bytes:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    ]
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n'
        + "\n".join(entities)
        + "\n]>\n<lolz>&lol9;</lolz>"
    ).encode()


def quadratic_blowup() -> bytes:
    # One 50 kB entity referenced 50 000 times: 2.5 GB once expanded.
    return (
        f'<?xml version="1.0"?><!DOCTYPE kaboom [<!ENTITY a "{"x" * 50_000}">]>'
        f"<kaboom>{'&a;' * 50_000}</kaboom>"
    ).encode()


def deep_nesting(levels: int = 100_000) -> bytes:
    return b"<a>" * levels + b"</a>" * levels


def many_elements(count: int = 1_000_000) -> bytes:
    return b"<r>" + b"<a/>" * count + b"</r>"


@pytest.fixture
def listener() -> Iterator[tuple[str, Callable[[], bool]]]:
    """A TCP port on localhost and a function telling whether anything connected."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    host, port = server.getsockname()

    def connected() -> bool:
        try:
            conn, _ = server.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True

    yield f"http://{host}:{port}", connected
    server.close()


def refused(data: bytes, error: type[ValueError] = UnsafeXML, **limits: int) -> str:
    with pytest.raises(error) as info:
        parse_xml(data, **limits)
    return str(info.value)


def test_billion_laughs_is_refused_as_a_dtd() -> None:
    message = refused(billion_laughs())
    assert message == "the document declares a DTD (<!DOCTYPE ...>) at line 2; DTDs are refused"


def test_quadratic_blowup_is_refused_as_a_dtd() -> None:
    assert "DTDs are refused" in refused(quadratic_blowup())


@pytest.mark.parametrize("target", ["/etc/passwd", "secret"])
def test_external_entity_is_refused_and_never_read(tmp_path: Path, target: str) -> None:
    if target == "secret":
        secret = tmp_path / "secret.txt"
        secret.write_text("TOP-SECRET-MARKER-8c1f")
        path, marker = str(secret), "TOP-SECRET-MARKER-8c1f"
    else:
        if not Path(target).exists():
            pytest.skip("no /etc/passwd here")
        path, marker = target, "root:"
    xxe = (
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file://{path}">]><r>&xxe;</r>'
    ).encode()
    with pytest.raises(UnsafeXML) as info:
        parse_xml(xxe)
    assert "DTDs are refused" in str(info.value)
    seen = repr(info.value) + repr(info.value.args) + str(info.value.__cause__)
    assert marker not in seen
    # Defence in depth: the parser options alone do not read the file either.
    tree = etree.fromstring(xxe, hardened_parser())
    assert marker not in etree.tostring(tree).decode()


def test_external_dtd_is_refused_without_network_access(
    listener: tuple[str, Callable[[], bool]],
) -> None:
    url, connected = listener
    external = f'<?xml version="1.0"?><!DOCTYPE r SYSTEM "{url}/evil.dtd"><r>&e;</r>'.encode()
    assert "DTDs are refused" in refused(external)
    entity = f'<!DOCTYPE r [<!ENTITY e SYSTEM "{url}/e.xml">]><r>&e;</r>'.encode()
    assert "DTDs are refused" in refused(entity)
    assert not connected()
    # Defence in depth: the parser options alone fetch nothing either.
    for document in (external.replace(b"&e;", b""), entity):
        etree.fromstring(document, hardened_parser())
    assert not connected()


def test_parameter_entities_are_refused(listener: tuple[str, Callable[[], bool]]) -> None:
    url, connected = listener
    local = b"<!DOCTYPE r [<!ENTITY % p \"<!ENTITY e 'x'>\"> %p;]><r>&e;</r>"
    remote = f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{url}/p.dtd"> %p;]><r/>'.encode()
    for document in (local, remote):
        assert "DTDs are refused" in refused(document)
    assert not connected()


def test_deep_nesting_is_stopped_at_the_limit() -> None:
    assert refused(deep_nesting()) == "nesting deeper than 64 levels at line 1"
    multiline = b"<a>\n" * 70 + b"</a>" * 70
    assert refused(multiline) == "nesting deeper than 64 levels at line 65"
    assert refused(deep_nesting(20), max_depth=10) == "nesting deeper than 10 levels at line 1"
    # libxml2 stops at 256 whatever the limit asked for.
    assert "nesting deeper than 256 levels" in refused(deep_nesting(300), max_depth=1000)
    assert parse_xml(deep_nesting(64)).tag == "a"


def test_too_many_elements_are_refused() -> None:
    message = refused(many_elements())
    assert message.startswith("more than 200000 elements")
    assert "more than 10 elements" in refused(many_elements(10), max_elements=10)
    assert parse_xml(many_elements(9), max_elements=10).tag == "r"


def test_oversize_input_is_refused_before_parsing() -> None:
    big = b"<r>" + b" " * (10 * MB) + b"</r>"
    assert refused(big) == f"the document is {len(big)} bytes, more than the {10 * MB} allowed"
    assert "more than the 100 allowed" in refused(b"<r>" + b"x" * 100 + b"</r>", max_bytes=100)


BOMBS = {
    "billion laughs": billion_laughs,
    "quadratic blowup": quadratic_blowup,
    "deep nesting": deep_nesting,
    "many elements": many_elements,
}


@pytest.mark.parametrize("bomb", BOMBS.values(), ids=list(BOMBS))
def test_bombs_keep_python_memory_flat(bomb: Callable[[], bytes]) -> None:
    document = bomb()
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeXML):
            parse_xml(document)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * MB


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in kB is Linux")
def test_bombs_keep_process_memory_flat() -> None:
    """tracemalloc does not see libxml2's allocations; the process's peak RSS does.
    Building the million-element document whole would take over 100 MB."""
    script = textwrap.dedent(
        """
        import resource, sys
        from tests.test_xml_soap import BOMBS
        from gateway.core.safexml import UnsafeXML, parse_xml
        documents = [bomb() for bomb in BOMBS.values()]
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for document in documents:
            try:
                parse_xml(document)
            except UnsafeXML:
                pass
            else:
                sys.exit("a bomb was accepted")
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    growth_kb = int(done.stdout.strip())
    assert growth_kb < 60 * 1024, f"peak RSS grew by {growth_kb} kB"


def test_a_dtd_cannot_hide_behind_the_encoding() -> None:
    doc = '<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE r [<!ENTITY e "x">]><r>&e;</r>'
    assert "DTDs are refused" in refused(doc.encode("utf-16"))  # with a byte order mark
    assert "DTDs are refused" in refused(doc.encode("utf-16-le"))  # without one
    assert "DTDs are refused" in refused(b"\xef\xbb\xbf" + doc.replace("16", "8").encode())
    utf7 = b'<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE r+AD4-<r/>'
    assert "encoding 'UTF-7'" in refused(utf7, InvalidXML)
    fake16 = b'<?xml version="1.0" encoding="UTF-16"?><r/>'  # declared, but 8-bit
    assert "encoding 'UTF-16'" in refused(fake16, InvalidXML)
    assert "UTF-32" in refused(doc.encode("utf-32"), InvalidXML)
    ok = '<?xml version="1.0" encoding="UTF-16"?><r>Sở Tư pháp</r>'.encode("utf-16")
    assert parse_xml(ok).text == "Sở Tư pháp"
    latin = '<?xml version="1.0" encoding="ISO-8859-1"?><r>café</r>'.encode("latin-1")
    assert parse_xml(latin).text == "café"


def test_a_dtd_after_comments_is_refused_but_its_text_elsewhere_is_not() -> None:
    late = b'<?xml version="1.0"?>\n<!-- a comment -->\n\n<!DOCTYPE r>\n<r/>'
    assert refused(late) == (
        "the document declares a DTD (<!DOCTYPE ...>) at line 4; DTDs are refused"
    )
    quoted = b"<r><!-- <!DOCTYPE x> --><![CDATA[<!DOCTYPE y>]]>&lt;!DOCTYPE z&gt;</r>"
    assert xml_to_data(parse_xml(quoted), namespaces={}) == {"r": "<!DOCTYPE y><!DOCTYPE z>"}


def test_the_prolog_check_reads_across_its_chunks() -> None:
    long_comment = b"<!--" + "chú thích ".encode() * 2000 + b"-->\n<!DOCTYPE r><r/>"
    assert "at line 2; DTDs are refused" in refused(long_comment)
    for offset in range(4000, 4200):  # constructs cut at the first chunk's end
        assert parse_xml(b" " * offset + b"<!-- c --><r/>").tag == "r"
        assert "DTDs are refused" in refused(b" " * offset + b"<!DOCTYPE r><r/>")
        assert "(<?pi ...?>)" in refused(b" " * offset + b"<?pi?><r/>")


def test_processing_instructions_are_refused() -> None:
    prolog = b'<?xml version="1.0"?>\n<?xml-stylesheet href="x.xsl"?><r/>'
    assert refused(prolog) == (
        "the document contains a processing instruction (<?xml-stylesheet ...?>) at line 2;"
        " processing instructions are refused"
    )
    assert "(<?php ...?>) at line 2" in refused(b"<r>\n<?php echo 1; ?></r>")
    assert "(<?after ...?>)" in refused(b"<r/><?after?>")
    assert "not at the very start" in refused(b' <?xml version="1.0"?><r/>', InvalidXML)
    assert parse_xml(b'<?xml version="1.0" encoding="utf-8"?><r/>').tag == "r"


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (b"<r>&nbsp;</r>", "Entity 'nbsp' not defined, line 1"),
        (b"<r>\n<a></b></r>", "Opening and ending tag mismatch: a line 2 and b"),
        (b"<r/><r/>", "Extra content at the end of the document"),
        (b"<r>", "line 1"),
        (b"", "the document is empty"),
        (b"  \n", "the document is empty"),
        (b'{"json": true}', "the document is not XML"),
    ],
)
def test_invalid_documents_say_what_is_wrong(document: bytes, expected: str) -> None:
    assert expected in refused(document, InvalidXML)


def test_predefined_entities_and_character_references_still_work() -> None:
    assert parse_xml(b"<r>&lt;&amp;&#x1EA1;&#7853;</r>").text == "<&ạậ"


# --- xml_to_data / data_to_xml ----------------------------------------------------------

EDXML = """<?xml version="1.0" encoding="UTF-8"?>
<edXML:edXMLEnvelope xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">
  <edXML:edXMLHeader>
    <edXML:MessageHeader>
      <edXML:From>
        <edXML:OrganId>000.00.00.H41</edXML:OrganId>
        <edXML:OrganName>Ủy ban nhân dân tỉnh Nghệ An</edXML:OrganName>
        <edXML:OrganAdd>Số 03 Trường Thi, thành phố Vinh</edXML:OrganAdd>
        <edXML:Email>ubnd@nghean.gov.vn</edXML:Email>
      </edXML:From>
      <edXML:To>
        <edXML:OrganId>000.00.15.G12</edXML:OrganId>
        <edXML:OrganName>Bộ Tư pháp</edXML:OrganName>
      </edXML:To>
      <edXML:Code>
        <edXML:CodeNumber>1234</edXML:CodeNumber>
        <edXML:CodeNotation>UBND-NC</edXML:CodeNotation>
      </edXML:Code>
      <edXML:Subject>Về việc cung cấp thông tin lý lịch tư pháp</edXML:Subject>
      <edXML:SteeringType/>
    </edXML:MessageHeader>
    <edXML:TraceHeaderList>
      <edXML:TraceHeader>
        <edXML:OrganId>000.00.00.H41</edXML:OrganId>
        <edXML:Timestamp>2024-05-06T08:30:00+07:00</edXML:Timestamp>
      </edXML:TraceHeader>
      <edXML:TraceHeader>
        <edXML:OrganId>000.00.15.G12</edXML:OrganId>
        <edXML:Timestamp>2024-05-06T08:31:12+07:00</edXML:Timestamp>
      </edXML:TraceHeader>
    </edXML:TraceHeaderList>
  </edXML:edXMLHeader>
  <edXML:edXMLBody>
    <edXML:AttachmentEncoded>
      <edXML:Attachment edXML:id="att-1">
        <edXML:ContentType>application/pdf</edXML:ContentType>
        <edXML:Description>Công văn số 1234/UBND-NC</edXML:Description>
        <edXML:Value>{attachment}</edXML:Value>
      </edXML:Attachment>
    </edXML:AttachmentEncoded>
  </edXML:edXMLBody>
</edXML:edXMLEnvelope>
"""
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n%%EOF\n"
EDXML_LISTS = {"edXML:To", "edXML:TraceHeader", "edXML:Attachment"}


def test_edxml_sample_round_trip() -> None:
    ns = {"edXML": QCVN}
    document = EDXML.replace("{attachment}", base64.b64encode(PDF).decode()).encode()
    data = xml_to_data(parse_xml(document), namespaces=ns, lists=EDXML_LISTS)

    envelope_ = data["edXML:edXMLEnvelope"]
    header = envelope_["edXML:edXMLHeader"]["edXML:MessageHeader"]
    assert header["edXML:From"]["edXML:OrganName"] == "Ủy ban nhân dân tỉnh Nghệ An"
    assert header["edXML:To"] == [  # one <To>, but named in lists: a list all the same
        {"edXML:OrganId": "000.00.15.G12", "edXML:OrganName": "Bộ Tư pháp"}
    ]
    assert header["edXML:SteeringType"] == ""
    traces = envelope_["edXML:edXMLHeader"]["edXML:TraceHeaderList"]["edXML:TraceHeader"]
    assert [t["edXML:OrganId"] for t in traces] == ["000.00.00.H41", "000.00.15.G12"]
    (attachment,) = envelope_["edXML:edXMLBody"]["edXML:AttachmentEncoded"]["edXML:Attachment"]
    assert attachment["@edXML:id"] == "att-1"
    assert base64.b64decode(attachment["edXML:Value"]) == PDF

    rebuilt = data_to_xml(data, namespaces=ns)
    assert rebuilt.nsmap == {"edXML": QCVN}
    again = xml_to_data(parse_xml(to_bytes(rebuilt)), namespaces=ns, lists=EDXML_LISTS)
    assert again == data
    # Same tree as the original, whitespace aside.
    original = etree.tostring(parse_xml(document), method="c14n")
    assert etree.tostring(parse_xml(to_bytes(rebuilt)), method="c14n") == original


def test_shapes_of_values() -> None:
    document = (
        b'<r xmlns="urn:default" xmlns:p="urn:p" xmlns:xsi="' + XSI.encode() + b'" p:kind="k">'
        b"<one>1</one><two>a</two><two>b</two>"
        b'<nil xsi:nil="true"/><empty/><attr lang="vi">xin ch\xc3\xa0o</attr>'
        b"<!-- a comment --><mixed>before<x/>after</mixed></r>"
    )
    data = xml_to_data(parse_xml(document), namespaces={"p": "urn:p"})
    assert data == {
        "{urn:default}r": {
            "@p:kind": "k",
            "{urn:default}one": "1",
            "{urn:default}two": ["a", "b"],
            "{urn:default}nil": None,
            "{urn:default}empty": "",
            "{urn:default}attr": {"@lang": "vi", "#text": "xin chào"},
            "{urn:default}mixed": {"{urn:default}x": "", "#text": "beforeafter"},
        }
    }


def test_scalars_and_none_are_written_as_xml_text() -> None:
    element = data_to_xml(
        {"yes": True, "no": False, "n": 42, "f": 1.5, "inf": float("inf"), "nil": None},
        namespaces={},
        root="r",
    )
    assert to_bytes(element, declaration=False) == (
        b'<r xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><yes>true</yes>'
        b'<no>false</no><n>42</n><f>1.5</f><inf>INF</inf><nil xsi:nil="true"/></r>'
    )
    assert xml_to_data(element, namespaces={})["r"]["nil"] is None
    assert to_bytes(data_to_xml({"r": "x"}, namespaces={})).startswith(b"<?xml version=")


def test_a_default_namespace_names_its_elements_without_a_prefix() -> None:
    document = (
        b'<r xmlns="urn:default" xmlns:p="urn:p" lang="vi"><one>1</one>'
        b'<p:two>2</p:two><plain xmlns="">3</plain></r>'
    )
    data = xml_to_data(
        parse_xml(document), namespaces={"p": "urn:p"}, default_namespace="urn:default"
    )
    # Attributes stay in no namespace; an element in none is told apart as "{}name".
    assert data == {"r": {"@lang": "vi", "one": "1", "p:two": "2", "{}plain": "3"}}
    written = data_to_xml(
        {"one": "1", "p:two": "2", "@lang": "vi"},
        namespaces={"p": "urn:p"},
        root="r",
        default_namespace="urn:default",
    )
    assert to_bytes(written, declaration=False) == (
        b'<r xmlns:p="urn:p" xmlns="urn:default" lang="vi"><one>1</one><p:two>2</p:two></r>'
    )
    with pytest.raises(ValueError, match=r"/r/\{\}plain: '\{\}plain' \(no namespace\)"):
        data_to_xml({"{}plain": "3"}, namespaces={}, root="r", default_namespace="urn:default")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"q:r": "x"}, "/q:r: the prefix 'q' of 'q:r' is not a known namespace prefix"),
        ({"r": {"a b": "x"}}, "/r/a b: 'a b' is not a valid XML element name"),
        ({"r": {"a": [["x"]]}}, "/r/a/0: a list inside a list has no XML form"),
        ({"r": {"a": b"x"}}, "/r/a: a bytes cannot be written as XML text"),
        ({"r": {"a": "\x00"}}, "/r/a: the text is not allowed in XML"),
        ({"r": {"@a b": "x"}}, "/r/@a b: not a valid attribute"),
        ({"r": "x", "s": "y"}, "exactly one key"),
        ({"r": ["x"]}, "/r: the root element cannot be a list"),
    ],
)
def test_unusable_data_is_refused_with_its_path(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValueError) as info:
        data_to_xml(data, namespaces={"p": "urn:p"})
    assert expected in str(info.value)


NS = {"x": "urn:example:x", "edXML": QCVN}
ELEMENT_NAMES = ["a", "b", "Tên", "x:a", "x:b", "edXML:c", "{urn:other}d"]
LIST_NAMES = {"x:b", "{urn:other}d"}
ATTRIBUTE_NAMES = ["@id", "@mã", "@x:kind", "@{urn:other}z", "@xml:lang"]
TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn")),
        st.sampled_from("\t\n\r  ạậắằẳẵặđĐơưỜỹ"),
    ),
    max_size=12,
)


def canonical(attributes: dict[str, str], children: dict[str, list[Any]], text: str) -> Any:
    """An element's value in the shape xml_to_data produces."""
    if not attributes and not children:
        return text
    value: dict[str, Any] = dict(attributes)
    for name, items in children.items():
        value[name] = items if name in LIST_NAMES or len(items) > 1 else items[0]
    if (children and text.strip()) or (not children and text):
        value["#text"] = text
    return value


def element_values(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(
        canonical,
        st.dictionaries(st.sampled_from(ATTRIBUTE_NAMES), TEXT, max_size=3),
        st.dictionaries(
            st.sampled_from(ELEMENT_NAMES), st.lists(inner, min_size=1, max_size=3), max_size=3
        ),
        TEXT,
    )


VALUES = st.recursive(st.one_of(TEXT, st.none()), element_values, max_leaves=20)
DOCUMENTS = st.builds(lambda name, value: {name: value}, st.sampled_from(ELEMENT_NAMES), VALUES)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_data_round_trips_through_xml(data: dict[str, Any]) -> None:
    element = data_to_xml(data, namespaces=NS)
    assert xml_to_data(element, namespaces=NS, lists=LIST_NAMES) == data
    parsed = parse_xml(to_bytes(element))
    assert xml_to_data(parsed, namespaces=NS, lists=LIST_NAMES) == data
    # The same names with a default namespace: unprefixed ones are in it, both ways.
    element = data_to_xml(data, namespaces=NS, default_namespace="urn:default")
    parsed = parse_xml(to_bytes(element))
    again = xml_to_data(parsed, namespaces=NS, lists=LIST_NAMES, default_namespace="urn:default")
    assert again == data


# --- SOAP -------------------------------------------------------------------------------

NATIONAL = "urn:vn:gov:dancu"


def c14n(element: etree._Element) -> bytes:
    """Exclusive canonical form: namespaces in scope but unused (the envelope's) left out."""
    return etree.tostring(element, method="c14n", exclusive=True)


def request_body() -> etree._Element:
    body = etree.Element(f"{{{NATIONAL}}}TraCuuCongDan", nsmap={"dc": NATIONAL})
    etree.SubElement(body, f"{{{NATIONAL}}}SoDinhDanh").text = "001099012345"
    etree.SubElement(body, f"{{{NATIONAL}}}HoVaTen").text = "Nguyễn Văn An"
    return body


def security_header() -> etree._Element:
    header = etree.Element("{urn:vn:lgsp}Security")
    header.text = "token"
    return header


@pytest.mark.parametrize(("version", "namespace"), [("1.1", SOAP11), ("1.2", SOAP12)])
def test_envelope_round_trip(version: Any, namespace: str) -> None:
    body = request_body()
    data = envelope(body, version=version, header=[security_header()])
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert etree.fromstring(data).tag == f"{{{namespace}}}Envelope"
    message = parse_envelope(data)
    assert message.version == version
    assert message.fault is None
    assert [h.tag for h in message.header] == ["{urn:vn:lgsp}Security"]
    assert message.body is not None
    assert c14n(message.body) == c14n(body)
    assert xml_to_data(message.body, namespaces={"dc": NATIONAL}) == {
        "dc:TraCuuCongDan": {"dc:SoDinhDanh": "001099012345", "dc:HoVaTen": "Nguyễn Văn An"}
    }
    assert body.getparent() is None  # the caller's element was copied, not moved
    empty = parse_envelope(envelope(None, version=version))
    assert (empty.header, empty.body, empty.fault) == ([], None, None)


def test_content_types() -> None:
    assert content_type("1.1", "urn:TraCuu") == {
        "Content-Type": "text/xml; charset=utf-8",
        "SOAPAction": '"urn:TraCuu"',
    }
    assert content_type("1.1")["SOAPAction"] == '""'
    assert content_type("1.2", "urn:TraCuu") == {
        "Content-Type": 'application/soap+xml; charset=utf-8; action="urn:TraCuu"'
    }
    assert content_type("1.2") == {"Content-Type": "application/soap+xml; charset=utf-8"}
    with pytest.raises(ValueError, match="cannot be sent in a header"):
        content_type("1.1", 'x"\r\nX-Injected: 1')
    with pytest.raises(ValueError, match=re.escape("'1.1' or '1.2'")):
        content_type("1.3", None)  # type: ignore[arg-type]


FAULT_11 = f"""<soap:Envelope xmlns:soap="{SOAP11}">
  <soap:Body>
    <soap:Fault>
      <faultcode>soap:Client.Authentication</faultcode>
      <faultstring>Mã định danh không hợp lệ</faultstring>
      <detail><e:Error xmlns:e="urn:err"><e:Code>DC-401</e:Code></e:Error></detail>
    </soap:Fault>
  </soap:Body>
</soap:Envelope>""".encode()

SERVER_FAULT_11 = f"""<s:Envelope xmlns:s="{SOAP11}"><s:Body><s:Fault>
  <faultcode>s:Server</faultcode><faultstring>Database unavailable</faultstring>
</s:Fault></s:Body></s:Envelope>""".encode()

FAULT_12 = f"""<env:Envelope xmlns:env="{SOAP12}" xmlns:m="urn:vn:gov:dancu:faults">
  <env:Body>
    <env:Fault>
      <env:Code>
        <env:Value>env:Sender</env:Value>
        <env:Subcode><env:Value>m:InvalidIdentifier</env:Value></env:Subcode>
      </env:Code>
      <env:Reason>
        <env:Text xml:lang="vi">Số định danh phải có 12 chữ số</env:Text>
        <env:Text xml:lang="en">The identifier must have 12 digits</env:Text>
      </env:Reason>
      <env:Detail><m:Field>SoDinhDanh</m:Field></env:Detail>
    </env:Fault>
  </env:Body>
</env:Envelope>""".encode()

RECEIVER_FAULT_12 = f"""<env:Envelope xmlns:env="{SOAP12}"><env:Body><env:Fault>
  <env:Code><env:Value>env:Receiver</env:Value></env:Code>
  <env:Reason><env:Text xml:lang="en">Timeout calling the population database</env:Text>
  </env:Reason></env:Fault></env:Body></env:Envelope>""".encode()


def test_soap11_faults() -> None:
    message = parse_envelope(FAULT_11)
    assert (message.version, message.body) == ("1.1", None)
    fault = message.fault
    assert fault is not None
    assert (fault.code, fault.subcode) == ("Client", "Authentication")
    assert fault.reason == "Mã định danh không hợp lệ"
    assert fault.detail is not None
    assert fault.detail.findtext("{urn:err}Error/{urn:err}Code") == "DC-401"

    problem = fault_to_problem(fault, service="VN/GOV/000.00.00.G06/DanCu")
    assert (problem.ptype, problem.status) == (INVALID_MESSAGE, 400)
    assert "VN/GOV/000.00.00.G06/DanCu" in problem.detail
    assert "Mã định danh không hợp lệ" in problem.detail
    assert problem.extensions == {
        "soap_fault": {
            "code": "Client",
            "subcode": "Authentication",
            "reason": "Mã định danh không hợp lệ",
        }
    }

    server = parse_envelope(SERVER_FAULT_11).fault
    assert server is not None
    assert (server.code, server.subcode, server.detail) == ("Server", None, None)
    problem = fault_to_problem(server, service="DanCu")
    assert (problem.ptype, problem.status) == (UPSTREAM_BAD_RESPONSE, 502)
    assert "Database unavailable" in problem.detail


def test_soap12_faults() -> None:
    fault = parse_envelope(FAULT_12).fault
    assert fault is not None
    assert fault.code == "Sender"
    assert fault.subcode == "{urn:vn:gov:dancu:faults}InvalidIdentifier"
    assert fault.reason == "Số định danh phải có 12 chữ số"  # the first Text
    assert fault.detail is not None
    assert fault.detail.findtext("{urn:vn:gov:dancu:faults}Field") == "SoDinhDanh"
    problem = fault_to_problem(fault, service="DanCu")
    assert problem.status == 400
    assert problem.extensions["soap_fault"]["subcode"] == fault.subcode

    receiver = parse_envelope(RECEIVER_FAULT_12).fault
    assert receiver is not None
    assert receiver.code == "Receiver"
    problem = fault_to_problem(receiver, service="DanCu")
    assert (problem.ptype, problem.status) == (UPSTREAM_BAD_RESPONSE, 502)
    assert problem.extensions["soap_fault"] == {
        "code": "Receiver",
        "subcode": None,
        "reason": "Timeout calling the population database",
    }


@pytest.mark.parametrize("source", [FAULT_11, FAULT_12])
@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_fault_envelopes_round_trip(source: bytes, version: Any) -> None:
    original = parse_envelope(source).fault
    assert original is not None
    rebuilt = parse_envelope(fault_envelope(original, version)).fault
    assert rebuilt is not None
    translate = {"1.1": {"Sender": "Client"}, "1.2": {"Client": "Sender"}}[version]
    assert rebuilt.code == translate.get(original.code, original.code)
    assert rebuilt.reason == original.reason
    assert rebuilt.detail is not None and original.detail is not None
    assert [c14n(c) for c in rebuilt.detail] == [c14n(c) for c in original.detail]
    if version == "1.2" or original.subcode == "Authentication":
        assert rebuilt.subcode == original.subcode
    else:  # SOAP 1.1 can only make a code more specific with a dotted local name
        assert rebuilt.subcode == "InvalidIdentifier"


def test_custom_fault_codes_and_hostile_reasons() -> None:
    custom = SoapFault(code="{urn:provider}Busy", reason="busy", detail=None)
    for version in ("1.1", "1.2"):
        parsed = parse_envelope(fault_envelope(custom, version)).fault
        assert parsed is not None and parsed.code == "{urn:provider}Busy"
    problem = fault_to_problem(custom, service="DanCu")
    assert problem.status == 502
    fault = SoapFault(code="Server", reason="x\x1by" + "z" * 1000, detail=None)
    problem = fault_to_problem(fault, service="DanCu")
    assert problem.status == 502
    reason = problem.extensions["soap_fault"]["reason"]
    assert reason.startswith("x y") and reason.endswith("…") and len(reason) == 501


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (b"<r/>", "not a SOAP envelope: the root element is r"),
        (b'<Envelope xmlns="urn:not-soap"><Body/></Envelope>', "neither SOAP 1.1"),
        (f'<s:Envelope xmlns:s="{SOAP12}"/>'.encode(), "must contain a Body"),
        (
            f'<s:Envelope xmlns:s="{SOAP11}"><s:Body/><s:Header/></s:Envelope>'.encode(),
            "unexpected",
        ),
        (
            f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><a/><b/></s:Body></s:Envelope>'.encode(),
            "the SOAP Body holds 2 elements (a, b, ...); one is expected",
        ),
        (
            f'<s:Envelope xmlns:s="{SOAP12}"><s:Body><s:Fault/></s:Body></s:Envelope>'.encode(),
            "no Code/Value",
        ),
        (b'{"not": "xml"}', "the document is not XML"),
    ],
)
def test_non_envelopes_are_refused(document: bytes, expected: str) -> None:
    with pytest.raises(InvalidXML) as info:
        parse_envelope(document)
    assert expected in str(info.value)


def test_envelopes_are_parsed_safely() -> None:
    hostile = (
        f'<!DOCTYPE s:Envelope [<!ENTITY x "y">]><s:Envelope xmlns:s="{SOAP11}">'
        "<s:Body>&x;</s:Body></s:Envelope>"
    ).encode()
    with pytest.raises(UnsafeXML, match="DTDs are refused"):
        parse_envelope(hostile)
    deep = envelope(etree.fromstring(deep_nesting(20)), version="1.1")
    with pytest.raises(UnsafeXML, match="nesting deeper than 10 levels"):
        parse_envelope(deep, max_depth=10)


def test_large_text_lifts_only_the_text_node_cap() -> None:
    """A base64 file over 10 MB in one element: refused by default (libxml2's cap),
    read with large_text; every other limit stays."""
    big = b"<Tep>" + b"A" * (11 * 1024 * 1024) + b"</Tep>"
    with pytest.raises(InvalidXML):
        parse_xml(big, max_bytes=32 * 1024 * 1024)
    root = parse_xml(big, max_bytes=32 * 1024 * 1024, large_text=True)
    assert len(root.text or "") == 11 * 1024 * 1024
    with pytest.raises(UnsafeXML, match="DTDs are refused"):
        parse_xml(billion_laughs(), large_text=True)
    with pytest.raises(UnsafeXML, match="nesting deeper than 64"):
        parse_xml(b"<a>" * 100 + b"</a>" * 100, large_text=True)
