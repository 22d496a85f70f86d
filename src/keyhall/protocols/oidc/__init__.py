"""OpenID Connect, the relying-party side, as pure code.

``discovery`` reads provider metadata (OpenID Connect Discovery 1.0) and JWK Sets (RFC 7517).
Nothing in this package performs I/O: callers fetch the bytes (``keyhall.security.outbound``)
and hand them in.
"""
