"""Tiny offline models for tests and the demo: built from configs in seconds, no download."""
