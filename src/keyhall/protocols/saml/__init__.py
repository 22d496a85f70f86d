"""SAML 2.0 service-provider code, pure and named after the specifications it follows.

- ``xml``: a hardened parser for untrusted SAML documents (no DTDs, no entities, no network).
- ``certificates``: X.509 certificates as found in ``<ds:X509Certificate>`` (XML-DSig §4.4.4,
  RFC 5280), with their expiry reported.
- ``metadata``: an identity provider's metadata (saml-metadata-2.0-os §2.3, §2.4.1, §2.4.3).

Nothing here imports a web framework, an HTTP client or the database.
"""
