"""Token-level plumbing shared by backbones: placeholder expansion, slot lookup, pooling.

All backbones tokenize with left padding, so the last prompt token of every row sits at index -1
and `mm = hidden[:, -1]`. Slots (e.g. mICL's visual slot) are character offsets in the rendered
text; the slot's vector is the hidden state of the last token that ends at or before the offset.
Because attention is causal, that vector cannot see anything after the slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def expand_placeholders(
    text: str, placeholder: str, counts: Sequence[int], slots: dict[str, int]
) -> tuple[str, dict[str, int]]:
    """Repeat the i-th `placeholder` in `text` `counts[i]` times, shifting slot offsets after it.

    Backbones splice one embedding per repeated placeholder token (Qwen's `<|image_pad|>`, the
    composed model's `<image>`), so the token sequence must hold exactly that many.
    """
    out, pos, shift_at = [], 0, []
    for n in counts:
        i = text.find(placeholder, pos)
        if i < 0:
            raise ValueError(f"text has fewer {placeholder!r} placeholders than images ({len(counts)})")
        out.append(text[pos:i])
        out.append(placeholder * n)
        shift_at.append((i, len(placeholder) * (n - 1)))
        pos = i + len(placeholder)
    if text.find(placeholder, pos) >= 0:
        raise ValueError(f"text has more {placeholder!r} placeholders than images ({len(counts)})")
    out.append(text[pos:])
    new_slots = {ch: off + sum(d for i, d in shift_at if i < off) for ch, off in slots.items()}
    return "".join(out), new_slots


def slot_indices(
    offsets: torch.Tensor, attention_mask: torch.Tensor, char_offsets: Sequence[int]
) -> torch.Tensor:
    """Index (in padded coordinates) of the last token that ends at or before each slot offset.

    A token that straddles the slot (BPE can merge `"` with what follows) is not taken: its hidden
    state would see text after the slot, and the slot's promise is that it cannot.
    offsets: [n, L, 2] (start, end) char offsets from a fast tokenizer; attention_mask: [n, L].
    """
    starts, ends = offsets[..., 0], offsets[..., 1]  # [n, L]
    limit = torch.as_tensor(list(char_offsets), dtype=starts.dtype).unsqueeze(1)  # [n, 1]
    ok = attention_mask.bool() & (ends <= limit) & (ends > starts)  # [n, L]
    if not bool(ok.any(dim=1).all()):
        raise ValueError("a slot sits before the first token of its prompt")
    positions = torch.arange(starts.shape[1]).expand_as(starts)  # [n, L]
    return torch.where(ok, positions, -1).max(dim=1).values  # [n]


def tokenize_with_slots(
    tokenizer: Any, texts: Sequence[str], slots: Sequence[dict[str, int]], add_special_tokens: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Tokenize left-padded and resolve every slot channel to a token index per row.

    Returns (encoding with input_ids/attention_mask, {channel: LongTensor[n]}). All rows of a
    batch must carry the same slot channels (they come from one template). Chat templates already
    hold any BOS token, hence `add_special_tokens=False` by default.
    """
    if tokenizer.padding_side != "left":
        raise ValueError("embedding needs a left-padding tokenizer (last prompt token at index -1)")
    channels = sorted(slots[0]) if slots else []
    if any(sorted(s) != channels for s in slots):
        raise ValueError("all items of a batch must have the same slots")
    enc = tokenizer(
        list(texts),
        padding=True,
        return_tensors="pt",
        return_offsets_mapping=bool(channels),
        add_special_tokens=add_special_tokens,
    )
    offsets = enc.pop("offset_mapping", None)
    idx = {ch: slot_indices(offsets, enc["attention_mask"], [s[ch] for s in slots]) for ch in channels}
    return dict(enc), idx


def gather_channels(hidden: torch.Tensor, slot_idx: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """hidden: [n, L, d] (left padded) -> {"mm": [n, d], slot channel: [n, d]}, on hidden's device
    and dtype, differentiable (the train stage back-propagates through it)."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    out = {"mm": hidden[:, -1]}
    for ch, idx in slot_idx.items():
        out[ch] = hidden[rows, idx.to(hidden.device)]
    return out


def pool(hidden: torch.Tensor, slot_idx: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`gather_channels` as float32 CPU tensors (what a store holds)."""
    return {ch: v.float().cpu() for ch, v in gather_channels(hidden, slot_idx).items()}
