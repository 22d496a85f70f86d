"""The SAML 2.0 side of the test IdP, on pysaml2's identity provider (``saml2.server.Server``):
it reads an ``<AuthnRequest>`` (HTTP-Redirect or HTTP-POST binding, saml-bindings-2.0-os §3.4,
§3.5) and answers with a ``<Response>`` whose response and assertion are both signed RSA-SHA256
with SHA-256 digests (pysaml2 would sign SHA-1 unless told), carrying the person's email as the
NameID (emailAddress format) and their names as attributes.

It answers only Keyhall's own assertion consumer services (``{public_url}/sso/{id}/saml/acs``),
and learns each Keyhall connection as a service provider when its first request arrives (the SP's
metadata is that request's issuer and ACS). pysaml2 signs by running the ``xmlsec1`` program
(Debian package ``xmlsec1``); without it the SAML side is off and says so. Pure: no web framework;
``keyhall.dev.saml_pages`` is the HTTP surface.
"""

from __future__ import annotations

import base64
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

with warnings.catch_warnings():  # pysaml2 touches a cipher mode cryptography has deprecated
    warnings.simplefilter("ignore")
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
    from saml2.config import IdPConfig
    from saml2.metadata import create_metadata_string
    from saml2.saml import NAME_FORMAT_BASIC, NAMEID_FORMAT_EMAILADDRESS, NameID
    from saml2.server import Server
    from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

from keyhall.dev.keys import saml_key_pair
from keyhall.dev.people import Person

BINDINGS = {"redirect": BINDING_HTTP_REDIRECT, "post": BINDING_HTTP_POST}
PASSWORD_PROTECTED = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
# What pysaml2's attribute converters call the attributes it sends (the seeded connection maps them).
ATTRIBUTE_NAMES = {"email": "urn:mace:dir:attribute-def:mail", "given_name": "urn:mace:dir:attribute-def:givenName",
                   "family_name": "urn:mace:dir:attribute-def:sn", "name": "urn:mace:dir:attribute-def:displayName"}
ASSERTION_MINUTES = 5
_ACS = re.compile(r"/sso/[A-Za-z0-9-]{1,64}/saml/acs")  # Keyhall's own assertion consumer services only
MAX_ENTITY_ID = 1024
MAX_SERVICE_PROVIDERS = 200  # learnt per process; Keyhall has one per SAML connection pointed here


class SamlRefused(Exception):
    """An authentication request the test IdP will not answer (shown on a page; no redirect)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@dataclass(frozen=True)
class AuthnRequest:
    """What the IdP took from an ``<AuthnRequest>``."""

    id: str
    sp_entity_id: str
    acs_url: str


@dataclass(frozen=True)
class PostForm:
    """The HTTP-POST binding's answer (bindings §3.5.4): fields to post to ``action``."""

    action: str
    fields: dict[str, str]


def xmlsec_available() -> bool:
    return shutil.which("xmlsec1") is not None


class DevSamlIdp:
    """pysaml2's IdP with the test IdP's key, certificate and rules."""

    def __init__(self, public_url: str, issuer: str, data_dir: Path) -> None:
        self.public_url = public_url
        self.entity_id = f"{issuer}/saml/metadata"
        self.sso_url = f"{issuer}/saml/sso"
        key_path, cert_path = saml_key_pair(data_dir, "Keyhall test IdP")
        config = IdPConfig()
        config.load({
            "entityid": self.entity_id,
            "service": {"idp": {
                "name": "Keyhall test IdP (development mode)",
                "endpoints": {"single_sign_on_service": [(self.sso_url, BINDING_HTTP_REDIRECT),
                                                         (self.sso_url, BINDING_HTTP_POST)]},
                "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                "want_authn_requests_signed": False,
                "sign_response": True, "sign_assertion": True,
                "policy": {"default": {"lifetime": {"minutes": ASSERTION_MINUTES}, "attribute_restrictions": None,
                                       "name_form": NAME_FORMAT_BASIC}},
            }},
            "key_file": str(key_path), "cert_file": str(cert_path), "metadata": {},
            "xmlsec_binary": shutil.which("xmlsec1"),
            "signing_algorithm": SIG_RSA_SHA256, "digest_algorithm": DIGEST_SHA256,
        })
        self.config = config
        self.server = Server(config=config)
        self._known_sps: set[str] = set()

    def metadata_xml(self) -> str:
        """The IdP's metadata (saml-metadata-2.0-os §2.4.3): entity id, SSO endpoints, certificate."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return str(create_metadata_string(None, config=self.config, sign=False).decode("utf-8"))

    def read(self, saml_request: str, binding: str) -> AuthnRequest:
        """Parse and check an ``<AuthnRequest>`` that came by ``binding`` (``redirect`` or ``post``)."""
        if binding not in BINDINGS or not saml_request:
            raise SamlRefused("SAMLRequest: missing; start the sign-in at Keyhall")
        try:
            parsed = self.server.parse_authn_request(saml_request, BINDINGS[binding])
        except Exception as exc:  # pysaml2 raises many unrelated types for a bad message
            raise SamlRefused(f"SAMLRequest: not an authentication request this IdP can read ({type(exc).__name__})") \
                from exc
        message = parsed.message
        issuer = (message.issuer.text or "").strip() if message.issuer is not None else ""
        acs = (message.assertion_consumer_service_url or "").strip()
        if not issuer or len(issuer) > MAX_ENTITY_ID:
            raise SamlRefused("Issuer: the request names no service provider")
        if not acs.startswith(self.public_url + "/") or not _ACS.fullmatch(acs.removeprefix(self.public_url)):
            raise SamlRefused("AssertionConsumerServiceURL: this test IdP answers only Keyhall's own ACS URLs")
        self._learn(issuer, acs)
        return AuthnRequest(id=str(message.id), sp_entity_id=issuer, acs_url=acs)

    def _learn(self, entity_id: str, acs: str) -> None:
        key = f"{entity_id} {acs}"
        if key in self._known_sps:
            return
        if len(self._known_sps) >= MAX_SERVICE_PROVIDERS:
            raise SamlRefused(f"Issuer: this test IdP answers at most {MAX_SERVICE_PROVIDERS} service providers; "
                              "restart it to forget the others")
        self.server.metadata.load("inline", (
            '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
            f'entityID={quoteattr(entity_id)}><md:SPSSODescriptor WantAssertionsSigned="true" '
            'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            f'<md:AssertionConsumerService Binding="{BINDING_HTTP_POST}" Location={quoteattr(acs)} index="0"/>'
            '</md:SPSSODescriptor></md:EntityDescriptor>'))
        self._known_sps.add(key)

    def respond(self, request: AuthnRequest, person: Person, relay_state: str | None) -> PostForm:
        """The signed ``<Response>`` for ``person``, to post to the request's ACS."""
        identity = {"mail": [person.email], "givenName": [person.given_name], "sn": [person.family_name],
                    "displayName": [person.name]}
        response = self.server.create_authn_response(
            identity, request.id, request.acs_url, request.sp_entity_id, userid=person.email,
            name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=person.email),
            authn={"class_ref": PASSWORD_PROTECTED}, sign_response=True, sign_assertion=True,
            sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256)
        fields = {"SAMLResponse": base64.b64encode(str(response).encode("utf-8")).decode("ascii")}
        if relay_state:
            fields["RelayState"] = relay_state
        return PostForm(action=request.acs_url, fields=fields)
