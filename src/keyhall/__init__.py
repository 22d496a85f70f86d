"""Keyhall: self-hosted enterprise single sign-on."""

__version__ = "0.1.0"
