"""`mllmrec prompts list|show`: see exactly what the backbone will read for an item."""

from __future__ import annotations

from mllmrec.prompts.config import PromptShowConfig
from mllmrec.prompts.render import render
from mllmrec.prompts.templates import PromptTemplate, list_templates, load_template

GENERIC_PLACEHOLDER = "<image>"


def run_list(cfg: None = None, command: list[str] | None = None) -> int:
    for name in list_templates():
        t = load_template(name)
        print(f"{name:16s} channels={','.join(t.channels):10s} {t.description}")
    return 0


def rendered_text(cfg: PromptShowConfig, template: PromptTemplate | None = None) -> str:
    """The item rendered through the template, slots shown as <<slot:NAME>>.

    Images are not decoded: each image reference of the item stands in as one placeholder, so
    this works on a catalogue whose images live elsewhere.
    """
    from mllmrec.catalog import load_catalog

    catalog = load_catalog(cfg)
    item = next((it for it in catalog.items if it.id == str(cfg.item)), None)
    if item is None:
        rejected = {r.item_id: r.reason for r in catalog.rejected}
        why = f" (rejected: {rejected[str(cfg.item)]})" if str(cfg.item) in rejected else ""
        raise KeyError(f"item {cfg.item!r} is not in {cfg.catalog}{why}")
    template = template or load_template(cfg.name)
    chat, placeholder = None, GENERIC_PLACEHOLDER
    if cfg.model:
        from mllmrec.backbone.load import open_renderer

        chat, placeholder = open_renderer(cfg.model)
    r = render(template, item, list(item.image_refs), image_placeholder=placeholder, chat=chat)
    text = r.text
    for ch, off in sorted(r.slots.items(), key=lambda kv: -kv[1]):
        text = f"{text[:off]}<<slot:{ch}>>{text[off:]}"
    return text


def run_show(cfg: PromptShowConfig, command: list[str] | None = None) -> int:
    template = load_template(cfg.name)
    print(f"# template {template.name} sha256={template.sha256[:16]} channels={','.join(template.channels)}")
    print(rendered_text(cfg, template))
    return 0
