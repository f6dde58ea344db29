"""Prompt templates: built-ins load, identity hashes, channels, lookup by name or path, validation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mllmrec.prompts.templates import (
    PromptError,
    PromptTemplate,
    Segment,
    builtin_dir,
    list_templates,
    load_template,
    parse_template,
)

BUILTINS = ("image-only", "notellm2", "notellm2-micl", "text-only")
CHANNELS = {
    "image-only": ("mm",),
    "notellm2": ("mm",),
    "notellm2-micl": ("mm", "visual"),
    "text-only": ("mm",),
}


def minimal(**overrides: Any) -> dict[str, Any]:
    """A valid template as a dict; keyword arguments replace or add keys."""
    data: dict[str, Any] = {"name": "t", "user": ["Item content: {{{fields}}}."], "answer_prefix": '"'}
    data.update(overrides)
    return data


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Built-ins
# ---------------------------------------------------------------------------------------------
def test_list_templates_is_the_sorted_builtins():
    assert list_templates() == sorted(BUILTINS)


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_loads_with_its_channels(name):
    t = load_template(name)
    assert isinstance(t, PromptTemplate)
    assert t.name == name
    assert t.description
    assert t.chat == "auto"
    assert t.answer_prefix == '"'
    assert t.channels == CHANNELS[name]
    assert re.fullmatch(r"[0-9a-f]{64}", t.sha256)
    assert t.identity() == {"name": name, "sha256": t.sha256}
    assert Path(t.source) == builtin_dir() / f"{name}.yaml"


def test_builtin_image_and_requirement_flags():
    assert load_template("notellm2").uses_images
    assert load_template("notellm2-micl").uses_images
    assert load_template("image-only").uses_images
    assert not load_template("text-only").uses_images
    assert load_template("image-only").requires == ("image",)
    assert load_template("text-only").requires == ("text",)
    assert load_template("notellm2").requires == ()


def test_micl_slot_channel_is_visual():
    t = load_template("notellm2-micl")
    assert t.slot_channels == ("visual",)
    # the conditional first segment carries the slot in both branches
    first = t.segments[0]
    assert first.when == "image"
    assert "{{slot:visual}}" in first.text and "{{slot:visual}}" in first.otherwise


def test_builtin_hashes_are_distinct_and_repeatable():
    hashes = {name: load_template(name).sha256 for name in BUILTINS}
    assert len(set(hashes.values())) == len(BUILTINS)
    assert {name: load_template(name).sha256 for name in BUILTINS} == hashes


# ---------------------------------------------------------------------------------------------
# Identity hash
# ---------------------------------------------------------------------------------------------
def test_hash_ignores_comments_formatting_key_order_and_location(tmp_path):
    original = (builtin_dir() / "notellm2.yaml").read_text(encoding="utf-8")
    reformatted = "# a different comment\n" + yaml.safe_dump(yaml.safe_load(original), sort_keys=True)
    assert reformatted != original
    copy = tmp_path / "elsewhere.yaml"
    copy.write_text(reformatted, encoding="utf-8")
    assert load_template(copy).sha256 == load_template("notellm2").sha256

    a = parse_template({"name": "t", "user": ["x {{fields}}"], "answer_prefix": '"'})
    b = parse_template({"answer_prefix": '"', "user": ["x {{fields}}"], "name": "t"}, source="other")
    assert a.sha256 == b.sha256


@pytest.mark.parametrize(
    "change",
    [
        {"user": ["Item content: {{{fields}}}!"]},  # one segment edited
        {"user": ["Item content: {{{fields}}}.", "\nCompress this item into one word:"]},  # one added
        {"answer_prefix": "'"},
        {"system": "You embed items."},
        {"name": "u"},
        {"requires": ["text"]},
    ],
)
def test_hash_changes_with_content(change):
    assert parse_template(minimal(**change)).sha256 != parse_template(minimal()).sha256


def test_edited_builtin_segment_changes_hash(tmp_path):
    data = yaml.safe_load((builtin_dir() / "notellm2-micl.yaml").read_text(encoding="utf-8"))
    data["user"][1] = data["user"][1].replace("Item content", "Item text")
    edited = load_template(write_yaml(tmp_path / "micl.yaml", data))
    assert edited.name == "notellm2-micl"
    assert edited.sha256 != load_template("notellm2-micl").sha256


# ---------------------------------------------------------------------------------------------
# Lookup
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_load_by_path(tmp_path, suffix):
    path = write_yaml(tmp_path / f"mine{suffix}", minimal(name="mine", description="my own"))
    for ref in (path, str(path)):
        t = load_template(ref)
        assert (t.name, t.description, t.source) == ("mine", "my own", str(path))
        assert t.segments == (Segment(text="Item content: {{{fields}}}."),)


def test_unknown_name_lists_the_builtins(tmp_path):
    with pytest.raises(PromptError) as e:
        load_template("notellm3")
    msg = str(e.value)
    assert "'notellm3'" in msg
    for name in BUILTINS:
        assert name in msg
    # a path to a missing YAML file is not mistaken for something loadable either
    with pytest.raises(PromptError, match="unknown prompt template"):
        load_template(tmp_path / "missing.yaml")


def test_invalid_yaml_is_a_prompt_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\nuser: x\n", encoding="utf-8")
    with pytest.raises(PromptError, match=r"broken\.yaml: not valid YAML"):
        load_template(path)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
def test_defaults_of_optional_keys():
    t = parse_template({"name": "bare", "user": ["{{fields}}"]})
    assert (t.description, t.chat, t.system, t.requires, t.answer_prefix) == ("", "auto", None, (), "")
    assert t.source == "<dict>"


def test_unknown_key_names_it_and_the_known_keys():
    with pytest.raises(PromptError) as e:
        parse_template(minimal(answer_prefx='"'), source="mine.yaml")
    msg = str(e.value)
    assert msg.startswith("mine.yaml:")
    assert "answer_prefx" in msg
    for key in ("answer_prefix", "chat", "requires", "system", "user"):
        assert key in msg


@pytest.mark.parametrize(
    "data",
    [
        ["name", "user"],
        "name: t",
        None,
    ],
)
def test_template_must_be_a_mapping(data):
    with pytest.raises(PromptError, match="must be a mapping"):
        parse_template(data)


@pytest.mark.parametrize(
    "data",
    [
        {"user": ["{{fields}}"]},  # no name
        {"name": "", "user": ["{{fields}}"]},
        {"name": "t"},  # no user
        {"name": "t", "user": []},
        {"name": "t", "user": "{{fields}}"},  # a string, not a list
    ],
)
def test_name_and_user_list_are_required(data):
    with pytest.raises(PromptError, match="needs a `name` and a non-empty `user` list"):
        parse_template(data)


@pytest.mark.parametrize("chat", ["always", "yes", True, None])
def test_bad_chat_value(chat):
    with pytest.raises(PromptError, match="chat must be 'auto' or 'never'"):
        parse_template(minimal(chat=chat))


def test_chat_never_is_accepted():
    assert parse_template(minimal(chat="never")).chat == "never"


@pytest.mark.parametrize("requires", [["colour"], ["image", "audio"], 5])
def test_bad_requires(requires):
    with pytest.raises(PromptError, match="requires may list only"):
        parse_template(minimal(requires=requires))


def test_requires_both_is_accepted():
    assert parse_template(minimal(requires=["image", "text"])).requires == ("image", "text")


@pytest.mark.parametrize(
    "segment",
    [
        5,
        ["a", "b"],
        {"if": "image"},  # no text
        {"text": "x", "otherwise": "y"},  # unknown key
        {"if": "image", "text": "x", "elif": "y"},
    ],
)
def test_bad_segment_shape(segment):
    with pytest.raises(PromptError, match=r"a segment is a string or \{if, text, else\}"):
        parse_template(minimal(user=["ok", segment]))


def test_bad_segment_condition():
    with pytest.raises(PromptError, match="segment condition must be one of") as e:
        parse_template(minimal(user=[{"if": "colour", "text": "x"}]))
    assert "'colour'" in str(e.value)


def test_segment_forms_parse():
    t = parse_template(
        minimal(user=["plain", {"text": "always"}, {"if": "text", "text": "yes {{fields}}", "else": "no"}])
    )
    assert t.segments == (
        Segment("plain"),
        Segment("always"),
        Segment("yes {{fields}}", when="text", otherwise="no"),
    )


@pytest.mark.parametrize(
    "text",
    [
        "{{title}}",
        "Item: {{imag}}",
        "{{field:}}",
        "{{slot:Visual}}",
        "{{slot:}}",
    ],
)
def test_unknown_marker(text):
    with pytest.raises(PromptError, match="unknown marker") as e:
        parse_template(minimal(user=[text]))
    assert text in str(e.value)


@pytest.mark.parametrize("text", ["{{Image}}", "{{ fields }}"])
def test_marker_lookalikes_are_rejected_not_rendered_literally(text):
    # A Jinja habit (`{{ fields }}`) or a capital letter would otherwise reach the model verbatim
    # and the item's text or image would silently be left out of its prompt.
    with pytest.raises(PromptError, match="unknown marker"):
        parse_template(minimal(user=[f"Item content: {text}."]))


def test_unknown_marker_in_else_branch():
    with pytest.raises(PromptError, match="unknown marker"):
        parse_template(minimal(user=[{"if": "image", "text": "{{image}}", "else": "{{picture}}"}]))


@pytest.mark.parametrize(
    "text",
    [
        "{{image}} {{fields}} {{field:title}} {{slot:visual}} {{slot:text_only}}",
        "Item content: {{{fields}}}.",  # JSON braces around a marker
        '{{"a": 1}}',  # literal double braces that are not a marker
    ],
)
def test_known_markers_and_literal_braces_are_accepted(text):
    assert parse_template(minimal(user=[text])).segments[0].text == text


def test_slot_channels_keep_first_seen_order_without_duplicates():
    t = parse_template(
        minimal(
            user=["{{slot:b}}", {"if": "image", "text": "{{slot:a}}", "else": "{{slot:b}}"}, "{{slot:a}}"]
        )
    )
    assert t.slot_channels == ("b", "a")
    assert t.channels == ("mm", "b", "a")
