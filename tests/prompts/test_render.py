"""Rendering items through templates (plain and chat mode), slot offsets, and `mllmrec prompts`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mllmrec.backbone.base import render_with_chat_template
from mllmrec.prompts.config import PromptShowConfig
from mllmrec.prompts.render import render
from mllmrec.prompts.show import rendered_text, run_list, run_show
from mllmrec.prompts.templates import PromptError, list_templates, load_template, parse_template
from mllmrec.testing.catalog import write_small_catalog
from mllmrec.testing.tokenizer import build_tokenizer
from mllmrec.types import Item

PH = "<image>"
MUG = Item("m1", {"title": "Red mug", "description": "A ceramic mug."}, ("mug.png",))
IMG = object()  # stands in for a decoded image: render never looks inside


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def chat(tok):
    return lambda user, system: render_with_chat_template(tok, user, system)


def plain(name: str, item: Item, images: list, **kw: Any):
    return render(load_template(name), item, images, image_placeholder=PH, **kw)


def template(*segments: Any, **keys: Any):
    return parse_template({"name": "t", "user": list(segments), "answer_prefix": '"', **keys})


# ---------------------------------------------------------------------------------------------
# Plain mode
# ---------------------------------------------------------------------------------------------
def test_notellm2_plain_with_image():
    r = plain("notellm2", MUG, [IMG])
    assert r.item_id == "m1"
    assert r.text == (
        'Item content: {"image": <image>, "title": "Red mug", "description": "A ceramic mug."}.'
        '\nCompress this item into one word:"'
    )
    assert r.images == [IMG]
    assert r.slots == {}


def test_notellm2_plain_without_image_drops_the_image_entry():
    r = plain("notellm2", Item("m2", {"title": "Red mug", "description": "A ceramic mug."}), [])
    assert r.text == (
        'Item content: {"title": "Red mug", "description": "A ceramic mug."}.\nCompress this item into one word:"'
    )
    assert r.images == []


@pytest.mark.parametrize("name", ["image-only", "notellm2", "notellm2-micl", "text-only"])
def test_answer_prefix_ends_the_text(name, chat):
    assert plain(name, MUG, [IMG]).text.endswith('\nCompress this item into one word:"')
    # chat mode: the prefix opens the assistant's answer, after the user turn is closed
    assert plain(name, MUG, [IMG], chat=chat).text.endswith(
        'Compress this item into one word:<|im_end|>\n<|im_start|>assistant\n"'
    )


def test_images_list_is_a_copy():
    images = [IMG]
    r = plain("notellm2", MUG, images)
    assert r.images == images and r.images is not images


# ---------------------------------------------------------------------------------------------
# Fields
# ---------------------------------------------------------------------------------------------
def test_fields_follow_item_order_skip_empty_and_escape_json():
    item = Item(
        "f",
        {"brand": 'ACME "Pro"', "title": "", "description": "line one\nback\\slash\ttab", "colour": "café"},
    )
    r = render(template("{{fields}}"), item, [], image_placeholder=PH)
    body = r.text[: -len('"')]
    assert body == (
        '"brand": "ACME \\"Pro\\"", "description": "line one\\nback\\\\slash\\ttab", "colour": "café"'
    )
    assert '"title"' not in r.text
    # each pair is valid JSON once wrapped in braces, and round-trips to the non-empty fields
    assert json.loads("{" + body + "}") == {k: v for k, v in item.texts.items() if v}


def test_fields_keep_non_ascii_field_names_readable():
    # values are written with ensure_ascii=False; names should be too, or a model reads "\u6807\u9898"
    item = Item("zh", {"标题": "红色杯子"})
    r = render(template("{{fields}}"), item, [], image_placeholder=PH)
    assert r.text == '"标题": "红色杯子""'


def test_fields_all_empty_render_nothing():
    r = render(
        template("[{{fields}}]"),
        Item("e", {"title": "", "description": ""}, ("a.png",)),
        [],
        image_placeholder=PH,
    )
    assert r.text == '[]"'


def test_single_field_marker_is_raw_and_missing_field_is_empty():
    item = Item("s", {"title": 'Mug "XL"', "description": "Big."})
    r = render(
        template("T={{field:title}}; D={{field:description}}; X={{field:nope}}."),
        item,
        [],
        image_placeholder=PH,
    )
    assert r.text == 'T=Mug "XL"; D=Big.; X=."'


# ---------------------------------------------------------------------------------------------
# Conditions and images
# ---------------------------------------------------------------------------------------------
def test_micl_image_branch_and_none_branch():
    with_image = plain("notellm2-micl", MUG, [IMG]).text
    without = plain("notellm2-micl", Item("m3", dict(MUG.texts)), []).text
    assert with_image.startswith('Item image: <image>. Compress this image into one word: "".')
    assert without.startswith('Item image: none. Compress this image into one word: "".')
    assert PH not in without
    tail = '\nItem content: {"title": "Red mug", "description": "A ceramic mug."}.\nCompress this item into one word:"'
    assert with_image.endswith(tail) and without.endswith(tail)


def test_text_condition_branches():
    t = template({"if": "text", "text": "has text: {{field:title}}", "else": "no text"})
    assert render(t, Item("a", {"title": "Mug"}), [], image_placeholder=PH).text == 'has text: Mug"'
    assert render(t, Item("b", {"title": ""}), [], image_placeholder=PH).text == 'no text"'


def test_image_condition_without_else_renders_nothing():
    t = template("<", {"if": "image", "text": "{{image}}"}, ">")
    assert render(t, Item("a", {"title": "x"}), [], image_placeholder=PH).text == '<>"'
    assert render(t, Item("a", {"title": "x"}, ("a.png",)), [IMG], image_placeholder=PH).text == '<<image>>"'


@pytest.mark.parametrize("n", [1, 2, 3])
def test_placeholder_once_per_image(n):
    images = [object() for _ in range(n)]
    r = plain("notellm2", MUG, images)
    assert r.text.count(PH) == n
    assert '"image": ' + PH * n + ", " in r.text
    assert r.images == images


def test_placeholder_is_the_backbone_one():
    r = render(load_template("image-only"), MUG, [IMG, IMG], image_placeholder="<|image_pad|>")
    assert r.text == 'Item image: <|image_pad|><|image_pad|>.\nCompress this item into one word:"'
    assert PH not in r.text


def test_text_only_never_carries_images():
    r = plain("text-only", MUG, [IMG, IMG])
    assert r.images == []
    assert PH not in r.text
    assert '"title": "Red mug"' in r.text


def test_image_only_leaves_text_out():
    r = plain("image-only", MUG, [IMG])
    assert r.text == 'Item image: <image>.\nCompress this item into one word:"'
    assert r.images == [IMG]


def test_image_marker_only_in_a_branch_not_taken_raises():
    # the template uses images, but for a text-less item the chosen branch has no {{image}}
    t = template({"if": "text", "text": "{{image}} {{fields}}", "else": "nothing to show"})
    item = Item("lonely", {"title": ""}, ("a.png",))
    with pytest.raises(PromptError, match=r"no \{\{image\}\} marker") as e:
        render(t, item, [IMG], image_placeholder=PH)
    assert "'lonely'" in str(e.value)
    # the same template renders an item that has text
    ok = render(t, Item("ok", {"title": "Mug"}, ("a.png",)), [IMG], image_placeholder=PH)
    assert ok.text.startswith(PH + " ") and ok.images == [IMG]


# ---------------------------------------------------------------------------------------------
# requires
# ---------------------------------------------------------------------------------------------
def test_requires_image_rejects_items_without_images():
    with pytest.raises(PromptError) as e:
        plain("image-only", Item("noimg", {"title": "Mug"}), [])
    msg = str(e.value)
    assert "'image-only'" in msg and "image" in msg and "'noimg'" in msg


def test_requires_text_rejects_items_without_text():
    with pytest.raises(PromptError) as e:
        plain("text-only", Item("notext", {"title": "", "description": ""}, ("a.png",)), [IMG])
    msg = str(e.value)
    assert "'text-only'" in msg and "text" in msg and "'notext'" in msg


# ---------------------------------------------------------------------------------------------
# Chat mode
# ---------------------------------------------------------------------------------------------
def test_chat_mode_wraps_the_plain_user_text(tok, chat):
    plain_text = plain("notellm2", MUG, [IMG]).text
    r = plain("notellm2", MUG, [IMG], chat=chat)
    assert r.text == render_with_chat_template(tok, plain_text[:-1]) + '"'
    assert r.text.startswith("<|im_start|>system\n")
    assert r.text.endswith('<|im_end|>\n<|im_start|>assistant\n"')
    assert r.images == [IMG]


def test_chat_mode_passes_the_template_system_message(chat):
    t = template("{{fields}}", system="You embed items.")
    r = render(t, MUG, [], image_placeholder=PH, chat=chat)
    assert r.text.startswith("<|im_start|>system\nYou embed items.<|im_end|>\n<|im_start|>user\n")
    assert "helpful assistant" not in r.text


def test_chat_never_and_no_chat_template_fall_back_to_plain(chat):
    t = template("{{field:title}}", chat="never")
    assert render(t, MUG, [], image_placeholder=PH, chat=chat).text == 'Red mug"'
    t_auto = template("{{field:title}}")
    assert render(t_auto, MUG, [], image_placeholder=PH, chat=lambda u, s: None).text == 'Red mug"'


def test_chat_function_that_alters_the_user_text_is_refused():
    def shouting(user: str, system: str | None) -> str:
        return "<user>" + user.upper() + "</user>"

    with pytest.raises(PromptError, match="chat: never"):
        plain("notellm2", MUG, [IMG], chat=shouting)


# ---------------------------------------------------------------------------------------------
# Slots
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["plain", "chat"])
@pytest.mark.parametrize("n_images", [0, 1, 2])
def test_visual_slot_sits_after_the_opening_quote(mode, n_images, chat):
    item = MUG if n_images else Item("m4", dict(MUG.texts))
    images = [object() for _ in range(n_images)]
    r = plain("notellm2-micl", item, images, chat=chat if mode == "chat" else None)
    assert set(r.slots) == {"visual"}
    off = r.slots["visual"]
    before, after = r.text[:off], r.text[off:]
    assert r.text[off - 1] == '"'
    assert before.endswith('Compress this image into one word: "')
    assert after.startswith('".\nItem content: {')
    assert before.count(PH) == n_images and after.count(PH) == 0
    assert ("Item image: none." in before) == (n_images == 0)
    for value in MUG.texts.values():
        assert value not in before and value in after
    if mode == "chat":
        assert before.startswith("<|im_start|>system\n") and "<|im_start|>user\n" in before


def test_slot_marker_leaves_no_trace_in_the_text():
    r = plain("notellm2-micl", MUG, [IMG])
    assert "slot" not in r.text and "{{" not in r.text


def test_several_slots_are_each_recorded():
    t = template("a{{slot:first}}bc{{image}}{{slot:second}}d", "{{fields}}")
    r = render(t, MUG, [IMG, IMG], image_placeholder=PH)
    assert r.slots == {"first": 1, "second": 3 + 2 * len(PH)}
    assert r.text[: r.slots["second"]] == "abc" + PH + PH


# ---------------------------------------------------------------------------------------------
# `mllmrec prompts list|show`
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def small_catalog(tmp_path) -> tuple[Path, list[dict[str, Any]]]:
    path = write_small_catalog(tmp_path / "cat", n=4)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return path, rows


def show_cfg(path: Path, name: str, item: str) -> PromptShowConfig:
    return PromptShowConfig(catalog=str(path), name=name, item=item)


def test_show_marks_the_visual_slot(small_catalog):
    path, rows = small_catalog
    text = rendered_text(show_cfg(path, "notellm2-micl", "x2"))
    assert text.count("<<slot:visual>>") == 1
    before, after = text.split("<<slot:visual>>")
    assert before == 'Item image: <image>. Compress this image into one word: "'
    assert after.startswith('".\nItem content: {"title": ' + json.dumps(rows[2]["title"]))
    assert after.endswith('one word:"')


def test_show_without_slots_marks_nothing(small_catalog):
    path, rows = small_catalog
    text = rendered_text(show_cfg(path, "notellm2", "x1"))
    assert "<<slot:" not in text
    assert text.startswith('Item content: {"image": <image>, "title": ' + json.dumps(rows[1]["title"]))


def test_show_unknown_item_names_it(small_catalog):
    path, _ = small_catalog
    with pytest.raises(KeyError, match="no-such-item"):
        rendered_text(show_cfg(path, "notellm2", "no-such-item"))


def test_show_rejected_item_says_why(small_catalog):
    path, _ = small_catalog
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"id": "blank", "title": "", "description": "", "image": ""}) + "\n")
    with pytest.raises(KeyError, match="blank") as e:
        rendered_text(show_cfg(path, "notellm2", "blank"))
    assert "rejected: no text and no image" in str(e.value)


def test_run_list_prints_every_builtin(capsys):
    assert run_list() == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list_templates()
    assert len(lines) == 4
    by_name = {line.split()[0]: line for line in lines}
    assert "channels=mm,visual" in by_name["notellm2-micl"]
    assert "channels=mm " in by_name["notellm2"]
    assert load_template("text-only").description in by_name["text-only"]


def test_run_show_prints_identity_then_text(small_catalog, capsys):
    path, _ = small_catalog
    assert run_show(show_cfg(path, "notellm2-micl", "x0")) == 0
    out = capsys.readouterr().out
    sha = load_template("notellm2-micl").sha256
    assert out.startswith(f"# template notellm2-micl sha256={sha[:16]} channels=mm,visual\n")
    assert "<<slot:visual>>" in out
