"""Spec code: pure implementations named after the specifications they follow.

Nothing here imports a web framework, an HTTP client or the database.
"""
