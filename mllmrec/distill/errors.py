"""Errors of the distill and recommend stages (all `MllmrecError`: the CLI prints them in one line)."""

from __future__ import annotations

from mllmrec.errors import MllmrecError


class DistillError(MllmrecError, ValueError):
    """Bad distillation input (store, log, split, loss spec) or a run directory that does not match."""


def positive(name: str, value: float) -> float:
    """`value` as a float, or a DistillError naming the option when it is not > 0 (loss options)."""
    if not value > 0:
        raise DistillError(f"{name} must be > 0, got {value}")
    return float(value)


class UnknownUserError(MllmrecError, KeyError):
    """A user id the run has no vector for (with unknown_users='error')."""

    def __str__(self) -> str:  # KeyError's str() would add quotes around the message
        return str(self.args[0]) if self.args else ""
