"""Bound every item's prompt by the model's context: truncate text from the end, with a record.

A catalogue description can be a megabyte; rendered whole it becomes ~200k tokens and the forward
pass tries to allocate tens of GB, and a prompt longer than the model's positions is embedded from
positions the model never saw. So each rendered item is counted exactly (the tokenizer on the
rendered text, plus the tokens its images expand to) against a limit, the smaller of `--max-tokens`
and the model's context (`max_position_embeddings`). An item over it keeps its images and prompt
and loses text from the end (last text field first); the manifest records which items were cut and
by how many tokens. With every item bounded, one batch holds at most batch_size x limit tokens.
An item whose prompt is over the limit even without any text is rejected with the reason.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mllmrec.types import Item, Rejection, RenderedItem

_ROUNDS = 6  # re-render rounds; JSON escaping and token merges at the cut make one round inexact


@dataclass(frozen=True)
class Cut:
    """What fitting one item did: its final token count and how many it lost."""

    tokens: int
    removed: int


def context_length(encoder: Any) -> int | None:
    """The model's positions (text config's max_position_embeddings), None when it does not say."""
    net = getattr(encoder, "network", None)
    cfg = getattr(net, "config", None)
    if cfg is None:
        return None
    text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    n = getattr(text_cfg, "max_position_embeddings", None)
    return int(n) if n else None


def token_limit(max_tokens: int | None, encoder: Any) -> int | None:
    """The per-item token limit: the smaller of the user's `max_tokens` and the model's context."""
    limits = [n for n in (max_tokens, context_length(encoder)) if n]
    return min(limits) if limits else None


_COUNTERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def counting_tokenizer(encoder: Any) -> Any:
    """A private copy of the encoder's tokenizer for counting. Counting runs in embed's prefetch
    thread while the main thread tokenizes a padded batch; a fast tokenizer keeps its padding
    setting in shared state, so sharing one object races (a batch comes back unpadded)."""
    tok = _COUNTERS.get(encoder)
    if tok is None:
        tok = _COUNTERS[encoder] = copy.deepcopy(encoder.tokenizer)
    return tok


def count_tokens(encoder: Any, rendered: RenderedItem) -> int:
    """Exact prompt length: the text's tokens, each image placeholder's pad token counted as the
    number of tokens the image expands to (what the backbone's `prepare`/`tokenize` will build)."""
    text = len(counting_tokenizer(encoder)(rendered.text, add_special_tokens=False)["input_ids"])
    sizes = [im.size for im in rendered.images]
    return text + sum(encoder.estimate_tokens(0, [s]) - 1 for s in sizes)


def fit(
    item: Item, render: Callable[[Item], RenderedItem], encoder: Any, limit: int | None
) -> tuple[RenderedItem, Cut | None]:
    """Render `item`; when over `limit` tokens, cut its text from the end until it fits.

    Returns (rendered item, Cut or None when nothing was cut). Raises `TooLong` when the prompt is
    over the limit with no text at all (its images and the template alone are too long).
    """
    rendered = render(item)
    if limit is None:
        return rendered, None
    first = n = count_tokens(encoder, rendered)
    texts = dict(item.texts)
    for _ in range(_ROUNDS):
        if n <= limit:
            return rendered, (Cut(n, first - n) if n < first else None)
        texts = _drop_tokens_from_end(counting_tokenizer(encoder), texts, n - limit)
        if not any(texts.values()):
            break
        rendered = render(Item(item.id, texts, item.image_refs))
        n = count_tokens(encoder, rendered)
    if n <= limit:
        return rendered, Cut(n, first - n)
    raise TooLong(
        f"prompt is {first} tokens, over the limit of {limit} (--max-tokens / model context) "
        "even with its text cut"
    )


class TooLong(Exception):
    """An item's prompt cannot be brought under the token limit by cutting text."""


def _drop_tokens_from_end(tokenizer: Any, texts: dict[str, str], n: int) -> dict[str, str]:
    """`texts` with about `n` tokens removed from the end: the last non-empty field first, cut at a
    token boundary (offsets from the fast tokenizer), then earlier fields."""
    out = dict(texts)
    for key in reversed(list(out)):
        if n <= 0:
            break
        value = out[key]
        if not value:
            continue
        offsets = tokenizer(value, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        if len(offsets) <= n:
            out[key], n = "", n - len(offsets)
        else:
            out[key], n = value[: offsets[len(offsets) - n][0]].rstrip(), 0
    return out


def truncation_record(item_id: str, cut: Cut, limit: int) -> dict[str, Any]:
    """The manifest record of a cut item (listed under "truncated")."""
    return {
        **Rejection(
            item_id,
            f"text cut from the end: {cut.removed} tokens removed to fit {limit} (now {cut.tokens})",
            action="truncated",
        ).to_dict(),
        "tokens_removed": cut.removed,
    }
