"""Activation (gradient) checkpointing across transformers versions.

transformers 5 renamed gradient checkpointing to activation checkpointing
(`activation_checkpointing_enable`, `is_activation_checkpointing`); the old names still work but
raise a FutureWarning on every call and go away in v6. We call the current name when the model has
it and the old one otherwise (older transformers). peft (0.21) still reads the old
`is_gradient_checkpointing` property whenever it wraps or loads an adapter, which printed that
warning on every training load; `quiet_peft_probe` silences exactly that one message around peft.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_OLD_PROBE = r"`is_gradient_checkpointing` is deprecated"


def enable_checkpointing(model: Any, *, use_reentrant: bool = False) -> None:
    """Turn activation checkpointing on in a transformers model (non-reentrant by default, which
    works with LoRA's frozen inputs)."""
    kwargs = {"use_reentrant": use_reentrant}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def is_checkpointing(model: Any) -> bool:
    """Whether activation checkpointing is on (False for a module that has no such switch)."""
    if hasattr(type(model), "is_activation_checkpointing"):
        return bool(model.is_activation_checkpointing)
    return bool(getattr(model, "is_gradient_checkpointing", False))


@contextmanager
def quiet_peft_probe() -> Iterator[None]:
    """Silence transformers' deprecation warning for the property peft reads when it wraps a model
    (only that message; every other warning still shows)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_OLD_PROBE, category=FutureWarning)
        yield
