"""The hardened XML parser for untrusted SAML documents (keyhall.protocols.saml.xml)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from lxml import etree

from keyhall.errors import InvalidInput, SamlMetadataError
from keyhall.protocols.saml.xml import parse_untrusted_xml

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "saml"
FIELD = "saml.metadata_xml"


def test_parses_bytes_and_returns_the_root_element() -> None:
    root = parse_untrusted_xml(b'<?xml version="1.0"?><a xmlns="urn:x"><b>1</b></a>', field=FIELD)

    assert root.tag == "{urn:x}a"
    assert root[0].text == "1"


def test_str_with_a_foreign_encoding_declaration_is_read_as_the_text_it_is() -> None:
    text = '\ufeff\n  <?xml version="1.0" encoding="ISO-8859-1"?>\n<name>Zoë Ågren</name>'

    root = parse_untrusted_xml(text, field=FIELD)

    assert root.text == "Zoë Ågren"


def test_bytes_with_leading_blank_lines_parse() -> None:
    root = parse_untrusted_xml(b'\r\n  <?xml version="1.0" encoding="UTF-8"?><a>x</a>', field=FIELD)

    assert root.text == "x"


def test_utf16_document_with_bom_parses() -> None:
    root = parse_untrusted_xml('<?xml version="1.0" encoding="UTF-16"?><a>é</a>'.encode("utf-16"), field=FIELD)

    assert root.text == "é"


def test_comments_and_processing_instructions_are_kept() -> None:
    root = parse_untrusted_xml(b"<a>user<!-- split -->@example.com<?keep me?></a>", field=FIELD)

    assert [type(node) for node in root] == [etree._Comment, etree._ProcessingInstruction]
    assert "".join(t for t in root.itertext() if isinstance(t, str)) == "user@example.com"


def test_document_over_the_limit_is_refused_before_parsing() -> None:
    with pytest.raises(SamlMetadataError) as caught:
        parse_untrusted_xml(b"<a>" + b"x" * 200 + b"</a>", max_bytes=100, field=FIELD)

    assert "207 bytes; the limit is 100 bytes" in caught.value.message
    assert caught.value.details == {"reason": "too_large", "size": 207, "limit": 100, "field": FIELD}


def test_str_over_the_limit_is_refused() -> None:
    with pytest.raises(SamlMetadataError, match="the limit is 10 bytes"):
        parse_untrusted_xml("<a>" + "é" * 20 + "</a>", max_bytes=10, field=FIELD)


@pytest.mark.parametrize("document", [b"", b"   \n", ""])
def test_empty_document_is_refused(document: bytes | str) -> None:
    with pytest.raises(SamlMetadataError, match="SAML metadata is empty") as caught:
        parse_untrusted_xml(document, field=FIELD)

    assert caught.value.field == FIELD


def test_xxe_fixture_is_refused_and_nothing_is_read() -> None:
    with pytest.raises(SamlMetadataError) as caught:
        parse_untrusted_xml((FIXTURES / "metadata-xxe.xml").read_bytes(), field=FIELD)

    assert caught.value.message.startswith("SAML metadata must not contain a DTD (found <!DOCTYPE)")
    assert caught.value.details["reason"] == "dtd_forbidden"
    assert "root:" not in str(caught.value) + str(caught.value.details)


def test_billion_laughs_fixture_is_refused_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(
        SamlMetadataError, match=r"must not contain a DTD \(found <!DOCTYPE\): DTDs and entities are refused"
    ):
        parse_untrusted_xml((FIXTURES / "metadata-billion-laughs.xml").read_bytes(), field=FIELD)

    assert time.monotonic() - started < 1.0


def test_external_dtd_reference_is_refused() -> None:
    document = b'<?xml version="1.0"?><!DOCTYPE a SYSTEM "http://127.0.0.1:9/evil.dtd"><a/>'

    with pytest.raises(SamlMetadataError, match="DOCTYPE"):
        parse_untrusted_xml(document, field=FIELD)


def test_entity_declaration_anywhere_is_refused() -> None:
    with pytest.raises(SamlMetadataError, match=r"must not contain a DTD \(found <!ENTITY\)"):
        parse_untrusted_xml(b"<a><!-- <!ENTITY x 'y'> --></a>", field=FIELD)


def test_doctype_in_utf16_is_refused() -> None:
    document = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>'

    with pytest.raises(SamlMetadataError, match="DOCTYPE"):
        parse_untrusted_xml(document.encode("utf-16"), field=FIELD)


def test_doctype_the_byte_scan_cannot_read_is_refused_after_parsing() -> None:
    # UCS-4 defeats the latin-1/UTF-16 scan; the parser expands nothing and the DTD is seen after.
    document = '<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>'.encode("utf-32-be")

    with pytest.raises(SamlMetadataError) as caught:
        parse_untrusted_xml(document, field=FIELD)

    assert caught.value.details["reason"] == "dtd_forbidden"


def test_malformed_fixture_reports_line_and_column() -> None:
    with pytest.raises(SamlMetadataError) as caught:
        parse_untrusted_xml((FIXTURES / "metadata-malformed.xml").read_bytes(), field=FIELD)

    message = caught.value.message
    assert message.startswith("SAML metadata is not well-formed XML: Opening and ending tag mismatch")
    assert message.endswith("(line 6, column 26)")
    assert caught.value.details == {"reason": "malformed", "line": 6, "column": 26, "field": FIELD}


def test_deep_nesting_is_refused_as_malformed() -> None:
    document = b"<a>" * 5000 + b"</a>" * 5000

    with pytest.raises(SamlMetadataError, match="not well-formed XML") as caught:
        parse_untrusted_xml(document, field=FIELD)

    assert caught.value.details["reason"] == "malformed"


def test_undeclared_entity_reference_is_malformed() -> None:
    with pytest.raises(SamlMetadataError, match="not well-formed XML: Entity 'secret' not defined"):
        parse_untrusted_xml(b"<a>&secret;</a>", field=FIELD)


def test_xinclude_is_not_processed() -> None:
    document = b'<a xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="file:///etc/passwd" parse="text"/></a>'

    root = parse_untrusted_xml(document, field=FIELD)

    assert root[0].tag == "{http://www.w3.org/2001/XInclude}include"
    assert not root[0].text


def test_error_class_and_subject_are_parameters() -> None:
    with pytest.raises(InvalidInput, match=r"^SAML response is not well-formed XML") as caught:
        parse_untrusted_xml(b"<samlp:Response>", field="SAMLResponse", error=InvalidInput, subject="SAML response")

    assert caught.value.field == "SAMLResponse"
