"""Render an item through a template into the text an encoder reads.

Plain mode: user segments + answer_prefix. Chat mode (template `chat: auto` and the tokenizer has
a chat template): the user segments become the user message, the assistant turn is opened, and the
answer_prefix starts the answer, so the last prompt token is where the model would write the
"one word". Slot markers are removed from the text and their character offsets recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from mllmrec.prompts.templates import MARKER, PromptError, PromptTemplate, TemplateError
from mllmrec.types import Item, RenderedItem

ChatFn = Callable[[str, "str | None"], "str | None"]


def render(
    template: PromptTemplate,
    item: Item,
    images: list,
    *,
    image_placeholder: str,
    chat: ChatFn | None = None,
    special_tokens: Sequence[str] = (),
) -> RenderedItem:
    """Render `item` (with its loaded `images`) for a backbone.

    `chat(user_text, system)` wraps a user message with the model's chat template or returns None
    when there is none. `special_tokens` are the tokenizer's control strings (and the image
    placeholder): inside item text they are defused, so a title containing `<|im_end|>` or
    `<image>` cannot change the prompt's structure or the number of image slots. Raises PromptError
    when the item lacks what the template `requires`, TemplateError when no item could render.
    """
    defuse = sorted({*special_tokens, image_placeholder} - {""}, key=len, reverse=True)
    if defuse:
        item = Item(item.id, {k: _defuse(v, defuse) for k, v in item.texts.items()}, item.image_refs)
    has = {"image": bool(images) and template.uses_images, "text": any(v for v in item.texts.values())}
    for need in template.requires:
        if not has[need]:
            raise PromptError(f"template {template.name!r} needs {need} but item {item.id!r} has none")
    user, slots = _render_user(template, item, images if template.uses_images else [], image_placeholder, has)
    wrapped = chat(user, template.system) if (chat is not None and template.chat == "auto") else None
    if wrapped is None:
        text, shift = user + template.answer_prefix, 0
    else:
        shift = wrapped.rfind(user)  # the user turn is the last message; a system text could repeat it
        if shift < 0:
            raise TemplateError(
                "the chat template altered the user message; use `chat: never` in the template"
            )
        text = wrapped + template.answer_prefix
    return RenderedItem(
        item_id=item.id,
        text=text,
        images=list(images) if template.uses_images else [],
        slots={ch: off + shift for ch, off in slots.items()},
    )


def _render_user(
    template: PromptTemplate, item: Item, images: list, placeholder: str, has: dict[str, bool]
) -> tuple[str, dict[str, int]]:
    out: list[str] = []
    slots: dict[str, int] = {}
    used_images = False
    for seg in template.segments:
        raw = seg.text if (seg.when is None or has[seg.when]) else seg.otherwise
        pos = 0
        for m in MARKER.finditer(raw):
            out.append(raw[pos : m.start()])
            key = m.group(1)
            if key == "image":
                out.append(placeholder * len(images))
                used_images = True
            elif key == "fields":
                out.append(
                    ", ".join(
                        f"{json.dumps(k, ensure_ascii=False)}: {json.dumps(v, ensure_ascii=False)}"
                        for k, v in item.texts.items()
                        if v
                    )
                )
            elif key.startswith("field:"):
                out.append(item.texts.get(key[6:], ""))
            else:  # slot:CHANNEL
                slots[key[5:]] = sum(len(s) for s in out)
            pos = m.end()
        out.append(raw[pos:])
    if images and not used_images:
        raise TemplateError(
            f"template {template.name!r} has no {{{{image}}}} marker for item {item.id!r}'s image"
        )
    return "".join(out), slots


def _defuse(text: str, specials: Sequence[str]) -> str:
    """Break special-token strings apart (a space after their first character) so the tokenizer
    reads them as plain text."""
    for tok in specials:
        if tok in text:
            text = text.replace(tok, f"{tok[0]} {tok[1:]}")
    return text
