"""The base class of every error mllmrec raises on purpose.

The CLI turns these (and only these, plus missing files) into one clear line; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class MllmrecError(Exception):
    """Bad input, a mismatched artefact or an impossible request: the message says what to do."""
