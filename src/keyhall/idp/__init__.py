"""Talking to organizations' identity providers: inspection (validation before storage)."""
