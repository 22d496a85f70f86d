"""The rules of Keyhall in plain Python: no HTTP, no SQL."""
