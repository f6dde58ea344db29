"""Shared value types passed between stages.

Only the standard library is imported here so every module (and the CLI) can use these types
without paying for torch or PIL at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Item:
    """One catalogue row after field mapping.

    `texts` keeps the catalogue's field order (already truncated); `image_refs` are the raw image
    references as written in the catalogue (at most `max_images` of them), resolved later so that
    a bad image is a per-item rejection, not a failure of the whole catalogue.
    """

    id: str
    texts: dict[str, str]
    image_refs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rejection:
    """An input that did not make it (fully) into an output, and why.

    `action` says what happened to the item: "rejected" (not in the output) or "text-only"
    (embedded without its image).
    """

    item_id: str
    reason: str
    action: str = "rejected"

    def to_dict(self) -> dict[str, str]:
        return {"id": self.item_id, "reason": self.reason, "action": self.action}


@dataclass
class RenderedItem:
    """An item rendered through a prompt template, ready for an encoder.

    `text` holds the backbone's image placeholder once per image in `images` (PIL images, in
    order). `slots` maps an extra output channel (e.g. "visual" for mICL) to the character offset
    in `text` where its compression slot sits: the channel's vector is the hidden state of the
    last token that ends at or before that offset. The `mm` vector is always the last token.
    """

    item_id: str
    text: str
    images: list[Any] = field(default_factory=list)
    slots: dict[str, int] = field(default_factory=dict)
