"""`mllmrec prompts show` config."""

from __future__ import annotations

from dataclasses import dataclass

from mllmrec.catalog.config import CatalogSpec
from mllmrec.config import REQUIRED, opt


@dataclass(frozen=True, kw_only=True)
class PromptShowConfig(CatalogSpec):
    """Print one catalogue item rendered through a prompt template (slots marked as <<slot:NAME>>)."""

    name: str = opt(REQUIRED, "Template name or YAML file.", positional=True)
    item: str = opt(REQUIRED, "Id of the item to render.")
    model: str | None = opt(
        None,
        "Render with this backbone's tokenizer (chat template, image placeholder); "
        "default: plain text with a generic <image> placeholder.",
    )
