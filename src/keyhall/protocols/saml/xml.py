"""A hardened XML parser for untrusted SAML documents.

SAML metadata (saml-metadata-2.0-os §2) and protocol messages (saml-core-2.0-os §3) are XML that
comes from outside: pasted by an organization's owner, fetched from an IdP, or posted by a
browser. None of them needs a document type declaration, and SAML forbids one in protocol
messages (saml-bindings-2.0-os §3.4.4.1, §3.5.4: "MUST NOT contain a DOCTYPE"). So a DOCTYPE is
refused outright, which closes entity expansion ("billion laughs"), external entities (XXE) and
DTD retrieval in one rule; the lxml parser is configured so that none of them could happen
anyway (``resolve_entities=False``, ``load_dtd=False``, ``no_network=True``,
``huge_tree=False``).

Comments and processing instructions are kept in the tree: stripping them would change what an
XML signature covers (Exclusive C14N, XML-DSig §4.3.3.2) and hide comment-splitting tricks from
the code that reads text nodes.

The error class is a parameter so that the SAML Response parser can raise its own error with the
same rules; metadata uses :class:`~keyhall.errors.SamlMetadataError`.
"""

from __future__ import annotations

import re

from lxml import etree

from keyhall.errors import KeyhallError, SamlMetadataError

__all__ = ["DEFAULT_MAX_BYTES", "parse_untrusted_xml"]

DEFAULT_MAX_BYTES = 1_048_576

# An XML declaration, optional and only at the very start (XML 1.0 §2.8 [23]).
_XML_DECLARATION = re.compile(r"\A<\?xml\s[^>]*\?>")
# Markup declarations that only a DTD may hold (XML 1.0 §2.8 [28], §4.2 [70]).
_DTD_MARKERS = (("DOCTYPE", "<!DOCTYPE"), ("ENTITY", "<!ENTITY"))
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_ASCII_WHITESPACE = b" \t\r\n"
_MAX_REASON_CHARS = 200
# libxml2 appends the position to its message; it is reported separately.
_POSITION_SUFFIX = re.compile(r",\s*line \d+,\s*column \d+\s*\Z")


def _new_parser() -> etree.XMLParser:
    """A fresh parser per document: lxml parsers carry state and are not shared across threads."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        huge_tree=False,
        recover=False,
        remove_comments=False,
        remove_pis=False,
        remove_blank_text=False,
    )


def _as_bytes(data: bytes | str) -> bytes:
    """Encode pasted text as UTF-8, dropping the BOM, leading blanks and the XML declaration.

    A ``str`` has already been decoded, so the encoding named in its declaration (XML 1.0
    §4.3.3) no longer applies; the declaration is dropped and the document read as UTF-8, the
    default when none is given. Leading blanks are common in pasted text but make the
    declaration illegal (XML 1.0 §2.8), so they go too.
    """
    if isinstance(data, str):
        text = data.lstrip("\ufeff").lstrip()
        return _XML_DECLARATION.sub("", text, count=1).encode("utf-8")
    if data[:1] and data[:1] in _ASCII_WHITESPACE:
        # Only ASCII-compatible encodings can start with an ASCII blank; UTF-16 needs a BOM.
        return data.lstrip(_ASCII_WHITESPACE)
    return data


def _dtd_marker(data: bytes) -> str | None:
    """Find a DTD declaration before the parser sees the document (defence in depth).

    Any occurrence counts, even inside a comment or CDATA section: a SAML document has no
    reason to carry that text, and refusing it early keeps libxml2 away from the internal subset.
    """
    texts = [data.decode("latin-1")]
    if data.startswith(_UTF16_BOMS) or b"\x00" in data[:4]:
        texts.append(data.decode("utf-16", errors="ignore"))
    for name, marker in _DTD_MARKERS:
        if any(marker in text for text in texts):
            return name
    return None


def _refuse_dtd(error: type[KeyhallError], subject: str, field: str, name: str) -> KeyhallError:
    return error(
        f"{subject} must not contain a DTD (found <!{name}): DTDs and entities are refused "
        "as they enable entity-expansion and external-entity attacks",
        field=field,
        details={"reason": "dtd_forbidden", "declaration": name},
    )


def parse_untrusted_xml(
    data: bytes | str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    field: str,
    error: type[KeyhallError] = SamlMetadataError,
    subject: str = "SAML metadata",
) -> etree._Element:
    """Parse an untrusted SAML document and return its root element.

    Refuses, with ``error`` naming ``field``: an empty document, one larger than ``max_bytes``,
    one with a DOCTYPE or ENTITY declaration (saml-bindings-2.0-os §3.4.4.1; XML 1.0 §2.8), and
    one that is not well-formed (XML 1.0 §2.1), with the line and column libxml2 reports.
    ``subject`` names the document in messages ("SAML metadata", "SAML response").
    """
    if isinstance(data, str) and len(data) > max_bytes:
        raise _too_large(error, subject, field, len(data), max_bytes)
    raw = _as_bytes(data)
    if len(raw) > max_bytes:
        raise _too_large(error, subject, field, len(raw), max_bytes)
    if not raw.strip():
        raise error(f"{subject} is empty", field=field, details={"reason": "empty"})
    marker = _dtd_marker(raw)
    if marker is not None:
        raise _refuse_dtd(error, subject, field, marker)
    try:
        root: etree._Element = etree.fromstring(raw, _new_parser())
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        first_line = (exc.msg or "syntax error").splitlines()[0]
        reason = _POSITION_SUFFIX.sub("", first_line)[:_MAX_REASON_CHARS]
        raise error(
            f"{subject} is not well-formed XML: {reason} (line {line}, column {column})",
            field=field,
            details={"reason": "malformed", "line": line, "column": column},
        ) from None
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        # Reached only by encodings the byte scan cannot read; the parser expanded nothing.
        raise _refuse_dtd(error, subject, field, "DOCTYPE")
    return root


def _too_large(error: type[KeyhallError], subject: str, field: str, size: int, limit: int) -> KeyhallError:
    return error(
        f"{subject} is {size} bytes; the limit is {limit} bytes",
        field=field,
        details={"reason": "too_large", "size": size, "limit": limit},
    )
