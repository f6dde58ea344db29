"""Typed configs: building from dicts/YAML, coercion, validation, and the dict round trip."""

from __future__ import annotations

import dataclasses

import pytest

from mllmrec.backbone.config import ComposeConfig
from mllmrec.catalog.config import CatalogSpec, parse_text_fields
from mllmrec.config import ConfigError, from_dict, load_yaml, to_dict
from mllmrec.datasets.config import DemoConfig, SyntheticConfig
from mllmrec.embed.config import EmbedConfig
from mllmrec.index.config import IndexConfig, NeighborsConfig
from mllmrec.prompts.config import PromptShowConfig

EMBED_REQUIRED = {"catalog": "items.jsonl", "model": "Qwen/Qwen2-VL-2B-Instruct", "out": "store"}


def embed(**kw) -> EmbedConfig:
    return from_dict(EmbedConfig, {**EMBED_REQUIRED, **kw})


# ---------------------------------------------------------------------------------------------
# from_dict: keys
# ---------------------------------------------------------------------------------------------
def test_from_dict_with_required_keys_only_uses_defaults():
    cfg = embed()
    assert (cfg.catalog, cfg.model, cfg.out) == ("items.jsonl", "Qwen/Qwen2-VL-2B-Instruct", "store")
    assert cfg.prompt == "notellm2"
    assert cfg.text_fields == ("title", "description")
    assert cfg.image_field == "image"
    assert (cfg.batch_size, cfg.max_images, cfg.resume, cfg.overwrite) == (16, 1, False, False)
    assert cfg.min_pixels is None


def test_unknown_key_names_it_and_lists_known_keys():
    with pytest.raises(ConfigError) as e:
        embed(batch_sise=4, promt="x")
    msg = str(e.value)
    assert "unknown option(s): batch_sise (did you mean batch_size?), promt (did you mean prompt?);" in msg
    known = msg.split("known:", 1)[1]
    for name in ("batch_size", "prompt", "catalog", "model", "text_fields", "on_bad_image"):
        assert name in known
    assert [k.strip() for k in known.split(",")] == sorted(f.name for f in dataclasses.fields(EmbedConfig))


def test_missing_required_values_are_named():
    with pytest.raises(ConfigError) as e:
        from_dict(EmbedConfig, {"catalog": "items.jsonl"})
    msg = str(e.value)
    assert msg.startswith("missing required option(s): --model, --out (YAML keys: model, out)")
    assert "catalog" not in msg


def test_required_value_given_as_null_is_refused():
    with pytest.raises(ConfigError, match="out: a value is required"):
        embed(out=None)


@pytest.mark.parametrize(
    ("cls", "required"),
    [
        (CatalogSpec, {"catalog": "c.jsonl"}),
        (PromptShowConfig, {"catalog": "c.jsonl", "name": "notellm2", "item": "x1"}),
        (ComposeConfig, {"lm": "lm", "out": "o"}),
        (IndexConfig, {"store": "s"}),
        (NeighborsConfig, {"store": "s", "item": "x1"}),
        (SyntheticConfig, {"out": "o"}),
        (DemoConfig, {}),
    ],
)
def test_every_config_builds_from_its_required_keys(cls, required):
    cfg = from_dict(cls, required)
    assert isinstance(cfg, cls)
    for k, v in required.items():
        assert getattr(cfg, k) == v
    if required:
        with pytest.raises(ConfigError, match="missing required"):
            from_dict(cls, dict(list(required.items())[1:]))


# ---------------------------------------------------------------------------------------------
# from_dict: coercion
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "value"), [(8, 8), ("8", 8), (" 12 ", 12)])
def test_int_coercion(raw, value):
    assert embed(batch_size=raw).batch_size == value


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("Yes", True),
        ("1", True),
        ("no", False),
        ("FALSE", False),
        ("0", False),
    ],
)
def test_bool_coercion(raw, value):
    assert embed(trust_remote_code=raw).trust_remote_code is value


def test_tuple_coercion():
    assert embed(text_fields=["title:64", "brand"]).text_fields == ("title:64", "brand")
    assert embed(text_fields="title").text_fields == ("title",)  # a single string is one field
    assert embed(text_fields=("a", "b")).text_fields == ("a", "b")


def test_literal_coercion():
    assert embed(dtype="bfloat16").dtype == "bfloat16"
    assert embed(on_bad_image="reject").on_bad_image == "reject"
    assert from_dict(IndexConfig, {"store": "s", "kind": "hnsw"}).kind == "hnsw"


def test_optional_coercion():
    assert embed(min_pixels="3136").min_pixels == 3136
    assert embed(min_pixels=None).min_pixels is None
    assert embed(revision=None).revision is None
    assert embed(revision="main").revision == "main"
    assert from_dict(ComposeConfig, {"lm": "l", "out": "o", "vision": None}).vision is None


def test_numbers_become_strings_for_string_fields():
    # ids in YAML are often bare numbers
    cfg = from_dict(PromptShowConfig, {"catalog": "c.jsonl", "name": "notellm2", "item": 42})
    assert cfg.item == "42"


@pytest.mark.parametrize(
    ("key", "raw", "match"),
    [
        ("batch_size", "sixteen", "batch_size: expected an integer"),
        ("batch_size", 2.5, "batch_size: expected an integer"),
        ("batch_size", "2.5", "batch_size: expected an integer"),
        ("batch_size", True, "batch_size: expected an integer"),
        ("batch_size", [4], "batch_size: expected an integer"),
        ("min_pixels", "many", "min_pixels: expected an integer"),
        ("resume", "maybe", "resume: expected true/false"),
        ("resume", 2, "resume: expected true/false"),
        ("dtype", "float64", "dtype: 'float64' is not one of auto, float32, bfloat16, float16"),
        ("on_bad_image", "skip", "on_bad_image: 'skip' is not one of text-only, reject, error"),
        ("store_dtype", None, "store_dtype: a value is required"),
        ("max_images", None, "max_images: a value is required"),
    ],
)
def test_wrong_types_name_the_field(key, raw, match):
    with pytest.raises(ConfigError, match=match):
        embed(**{key: raw})


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("prompt", ["notellm2", "text-only"]),  # a list for a string field
        ("id_field", {"name": "id"}),  # a mapping for a string field
        ("text_fields", 5),  # a number for a list field
    ],
)
def test_containers_and_scalars_in_the_wrong_place_name_the_field(key, raw):
    # str() of a list/dict would silently become a bogus value ("['notellm2', 'text-only']")
    with pytest.raises(ConfigError, match=key):
        embed(**{key: raw})


def test_tuple_items_are_coerced_and_checked():
    assert embed(text_fields=["title", 7]).text_fields == ("title", "7")
    with pytest.raises(ConfigError, match="text_fields: a value is required"):
        embed(text_fields=["title", None])


# ---------------------------------------------------------------------------------------------
# Validation in the dataclasses
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["none", "None", "NONE", "null", ""])
def test_image_field_none_means_text_only(raw):
    assert CatalogSpec(catalog="c.jsonl", image_field=raw).image_field is None
    assert embed(image_field=raw).image_field is None


def test_image_field_keeps_real_names():
    assert CatalogSpec(catalog="c.jsonl", image_field="nonesuch").image_field == "nonesuch"
    assert CatalogSpec(catalog="c.jsonl", image_field=None).image_field is None


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"max_images": 0}, "max_images must be >= 1, got 0"),
        ({"max_image_pixels": 0}, "max_image_pixels must be >= 1"),
        ({"text_fields": ("title:0",)}, "positive integer"),
    ],
)
def test_catalog_spec_checks(kw, match):
    with pytest.raises(ConfigError, match=match):
        CatalogSpec(catalog="c.jsonl", **kw)
    with pytest.raises(ConfigError, match=match):
        embed(**kw)  # EmbedConfig runs the same checks


def test_resume_with_overwrite_is_refused():
    with pytest.raises(ConfigError, match="--resume and --overwrite contradict each other"):
        embed(resume=True, overwrite=True)
    assert embed(resume=True).resume and embed(overwrite="yes").overwrite


@pytest.mark.parametrize("kw", [{"batch_size": 0}, {"shard_size": 0}, {"batch_size": -3}])
def test_batch_and_shard_sizes_must_be_positive(kw):
    with pytest.raises(ConfigError, match="batch_size and shard_size must be >= 1"):
        embed(**kw)


# ---------------------------------------------------------------------------------------------
# parse_text_fields
# ---------------------------------------------------------------------------------------------
def test_parse_text_fields_limits():
    assert parse_text_fields(("title:64", "description", "brand:1")) == [
        ("title", 64),
        ("description", None),
        ("brand", 1),
    ]
    assert parse_text_fields(()) == []


@pytest.mark.parametrize("spec", ["title:0", "title:-5", "title:abc", "title:6.5", "title:64:2", "title: 64"])
def test_parse_text_fields_bad_limit(spec):
    with pytest.raises(ConfigError, match="positive integer") as e:
        parse_text_fields(("description", spec))
    assert repr(spec) in str(e.value)


@pytest.mark.parametrize(
    "specs", [("title", "title"), ("title:64", "title:32"), ("title", "body", "title:5")]
)
def test_parse_text_fields_duplicates(specs):
    with pytest.raises(ConfigError, match="listed twice"):
        parse_text_fields(specs)


@pytest.mark.parametrize("spec", ["", ":64"])
def test_parse_text_fields_empty_name(spec):
    with pytest.raises(ConfigError, match="empty text field name"):
        parse_text_fields(("title", spec))


# ---------------------------------------------------------------------------------------------
# load_yaml
# ---------------------------------------------------------------------------------------------
def test_load_yaml_turns_dashes_into_underscores(tmp_path):
    path = tmp_path / "embed.yaml"
    path.write_text(
        "catalog: items.jsonl\nmodel: m\nout: store\nbatch-size: 4\ntext-fields: [title:64, description]\n"
        "image_field: none\n",
        encoding="utf-8",
    )
    data = load_yaml(path)
    assert data == {
        "catalog": "items.jsonl",
        "model": "m",
        "out": "store",
        "batch_size": 4,
        "text_fields": ["title:64", "description"],
        "image_field": "none",
    }
    cfg = from_dict(EmbedConfig, data)
    assert (cfg.batch_size, cfg.text_fields, cfg.image_field) == (4, ("title:64", "description"), None)


def test_load_yaml_empty_file_is_an_empty_mapping(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing set\n", encoding="utf-8")
    assert load_yaml(str(path)) == {}


@pytest.mark.parametrize("content", ["- a\n- b\n", "just a string\n", "42\n"])
def test_load_yaml_refuses_non_mappings(tmp_path, content):
    path = tmp_path / "bad.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match="must be a mapping") as e:
        load_yaml(path)
    assert str(path) in str(e.value)


# ---------------------------------------------------------------------------------------------
# to_dict round trip
# ---------------------------------------------------------------------------------------------
def test_to_dict_is_json_ready_and_round_trips():
    import json

    cfg = embed(
        text_fields=["title:64", "description"],
        image_field="none",
        batch_size="8",
        resume="true",
        dtype="float16",
        min_pixels=3136,
    )
    d = to_dict(cfg)
    assert d["text_fields"] == ["title:64", "description"]
    assert d["image_field"] is None
    assert set(d) == {f.name for f in dataclasses.fields(EmbedConfig)}
    assert json.loads(json.dumps(d)) == d
    assert from_dict(EmbedConfig, d) == cfg
    assert from_dict(EmbedConfig, json.loads(json.dumps(d))) == cfg


@pytest.mark.parametrize(
    "cfg",
    [
        DemoConfig(),
        SyntheticConfig(out="o", n_items=10),
        IndexConfig(store="s", kind="ivf", nlist=8),
        PromptShowConfig(catalog="c.jsonl", name="notellm2-micl", item="x1", text_fields=("title",)),
    ],
)
def test_to_dict_round_trip_other_configs(cfg):
    assert from_dict(type(cfg), to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("model: !!python/object/apply:os.system ['echo hi']\n", "python/object"),
        ("model: [unclosed\n", "line"),
    ],
)
def test_a_yaml_config_with_a_python_tag_or_bad_syntax_is_one_clear_error(tmp_path, text, words):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=rf"cfg.yaml: not a plain YAML config.*{words}"):
        load_yaml(p)
