"""load_catalog: field mapping rules, whole-file errors, and the accounting rule that every input
row ends up either in `items` or in `rejected`."""

from __future__ import annotations

import hashlib
import math

import pytest

from mllmrec.catalog import Catalog, CatalogError, load_catalog
from mllmrec.catalog.config import CatalogSpec
from mllmrec.types import Item, Rejection

ROWS = [
    {"id": "a", "title": "  Red mug ", "description": "A mug.", "image": ["good.png", "img/second.png"]},
    {"id": "b", "title": "Blue cup", "description": "", "image": []},
    {"id": "c", "title": "", "description": "", "image": ["good.jpg"]},
    {"id": "d", "title": "", "description": "  ", "image": []},
]


TWO = ("title", "description")


def load(path, **kw) -> Catalog:
    """load_catalog with text_fields=("title",) unless given."""
    kw.setdefault("text_fields", ("title",))
    return load_catalog(CatalogSpec(catalog=str(path), **kw))


def accounted(cat: Catalog, n_rows: int) -> None:
    """Every row is in exactly one of items / rejected."""
    ids = [i.id for i in cat.items] + [r.item_id for r in cat.rejected]
    assert len(ids) == len(set(ids)) == n_rows


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_same_items_from_every_format(write_catalog, suffix):
    cat = load(write_catalog(ROWS, f"cat/items{suffix}"), max_images=2, text_fields=TWO)
    assert cat.items == [
        Item("a", {"title": "Red mug", "description": "A mug."}, ("good.png", "img/second.png")),
        Item("b", {"title": "Blue cup", "description": ""}, ()),
        Item("c", {"title": "", "description": ""}, ("good.jpg",)),
    ]
    assert cat.rejected == [Rejection("d", "no text and no image", "rejected")]
    accounted(cat, len(ROWS))


def test_catalog_path_base_dir_and_sha256(write_catalog):
    path = write_catalog(ROWS)
    cat = load(path)
    assert cat.path == path.resolve() and cat.base_dir == path.parent.resolve()
    assert cat.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_row_order_kept(write_catalog):
    rows = [{"id": str(i), "title": f"t{i}"} for i in (5, 3, 9, 1, 7)]
    cat = load(write_catalog(rows), image_field="none")
    assert [i.id for i in cat.items] == ["5", "3", "9", "1", "7"]


def test_ids_become_strings_and_int_equals_str(write_catalog):
    cat = load(write_catalog([{"id": 7, "title": "x"}, {"id": " 8 ", "title": "y"}]), image_field=None)
    assert [i.id for i in cat.items] == ["7", "8"]
    with pytest.raises(CatalogError, match=r"duplicate item ids.*'7' \(1 ids occur more than once\)"):
        load(write_catalog([{"id": 7, "title": "x"}, {"id": "7", "title": "y"}]), image_field=None)


def test_integral_float_ids_lose_the_point(write_catalog):
    cat = load(
        write_catalog([{"id": 7.0, "title": "x"}, {"id": 7.5, "title": "y"}], "c/i.parquet"), image_field=None
    )
    assert [i.id for i in cat.items] == ["7", "7.5"]


def test_duplicate_ids_first_ten_and_count(write_catalog):
    rows = [{"id": f"x{i}", "title": "t"} for i in range(12)] * 2 + [{"id": "solo", "title": "t"}]
    with pytest.raises(CatalogError) as e:
        load(write_catalog(rows), image_field=None)
    msg = str(e.value)
    assert all(f"'x{i}'" in msg for i in range(10))
    assert "'x10'" not in msg and "'solo'" not in msg
    assert "(12 ids occur more than once)" in msg


@pytest.mark.parametrize("bad", [None, "", "   "])
def test_missing_or_empty_id_names_the_row(write_catalog, bad):
    rows = [{"id": "a", "title": "t"}, {"id": "b", "title": "t"}, {"id": bad, "title": "t"}]
    with pytest.raises(CatalogError, match=r"missing or empty id \(field 'id'\) in row\(s\) 3 \(1 rows"):
        load(write_catalog(rows), image_field=None)


def test_id_key_absent_in_some_rows(write_catalog):
    rows = [{"id": "a", "title": "t"}] + [{"title": "t"}] * 12
    with pytest.raises(CatalogError, match=r"row\(s\) 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, \.\.\. \(12 rows"):
        load(write_catalog(rows), image_field=None)


@pytest.mark.parametrize(
    "kw, expected",
    [
        (
            dict(text_fields=("title", "descripton")),
            r"unknown text field 'descripton'; columns are id, title, "
            r"description, image \(did you mean 'description'\?\)",
        ),
        (dict(id_field="item_id"), r"unknown id field 'item_id'; columns are id, title, description, image"),
        (dict(image_field="img"), r"unknown image field 'img'; columns are .*\(did you mean 'image'\?\)"),
    ],
)
def test_unknown_fields_are_typos(write_catalog, kw, expected):
    with pytest.raises(CatalogError, match=expected):
        load(write_catalog(ROWS), **{"text_fields": TWO, **kw})


def test_field_present_in_only_some_rows_is_fine(write_catalog):
    rows = [{"id": "a", "title": "t"}, {"id": "b", "title": "u", "description": "only here"}]
    cat = load(write_catalog(rows), image_field=None, text_fields=TWO)
    assert [i.texts for i in cat.items] == [
        {"title": "t", "description": ""},
        {"title": "u", "description": "only here"},
    ]


def test_text_values_null_nonstring_nan_stripped(write_catalog):
    rows = [
        {"id": "a", "title": None, "description": 12.5},
        {"id": "b", "title": "\n\t hi \n", "description": True},
    ]
    cat = load(write_catalog(rows), image_field=None, text_fields=TWO)
    assert [i.texts for i in cat.items] == [
        {"title": "", "description": "12.5"},
        {"title": "hi", "description": "True"},
    ]
    nan_rows = [{"id": "a", "title": "t", "description": math.nan}]
    cat = load(write_catalog(nan_rows, "c/nan.parquet"), image_field=None, text_fields=TWO)
    assert cat.items[0].texts["description"] == ""


def test_truncation_per_field_and_prompt_order(write_catalog):
    rows = [{"id": "a", "title": "abcdefghij", "description": "  0123456789  ", "extra": "z"}]
    cat = load(write_catalog(rows), image_field=None, text_fields=("description:4", "title:20", "extra:1"))
    assert cat.items[0].texts == {"description": "0123", "title": "abcdefghij", "extra": "z"}
    assert list(cat.items[0].texts) == ["description", "title", "extra"]
    cut = load(write_catalog([{"id": "a", "title": "ab   cd"}]), image_field=None, text_fields=("title:4",))
    assert cut.items[0].texts["title"] == "ab"  # no trailing space left by the cut


def test_image_refs_first_max_images_and_empties_dropped(write_catalog):
    rows = [
        {"id": "a", "title": "t", "image": [None, "", "  ", "one.png", " two.png ", "three.png"]},
        {"id": "b", "title": "t", "image": "solo.png"},
        {"id": "c", "title": "t", "image": None},
        {"id": "d", "title": "", "image": [None, ""]},  # only empty refs: counts as no image
    ]
    cat = load(write_catalog(rows), max_images=2)
    assert [i.image_refs for i in cat.items] == [("one.png", "two.png"), ("solo.png",), ()]
    assert cat.rejected == [Rejection("d", "no text and no image")]
    accounted(cat, 4)


def test_csv_pipe_separated_images(write_catalog):
    rows = [{"id": "1", "title": "t", "image": "a.png|b.png||c.png"}, {"id": "2", "title": "", "image": ""}]
    cat = load(write_catalog(rows, "cat/items.csv"), max_images=3)
    assert cat.items == [Item("1", {"title": "t"}, ("a.png", "b.png", "c.png"))]
    assert cat.rejected == [Rejection("2", "no text and no image")]


def test_pipe_not_split_outside_csv(write_catalog):
    cat = load(write_catalog([{"id": "1", "title": "t", "image": "a|b.png"}]))
    assert cat.items[0].image_refs == ("a|b.png",)


def test_text_only_catalogue_needs_no_image_column(write_catalog):
    cat = load(write_catalog([{"id": "1", "title": "t"}, {"id": "2", "title": ""}]), image_field="none")
    assert cat.items == [Item("1", {"title": "t"}, ())]
    assert cat.rejected == [Rejection("2", "no text and no image")]


def test_image_cell_of_wrong_type(write_catalog):
    rows = [{"id": "1", "title": "t", "image": "a.png"}, {"id": "2", "title": "t", "image": {"path": "x"}}]
    with pytest.raises(CatalogError, match=r"image field 'image' in row 2 holds a dict"):
        load(write_catalog(rows))


def test_empty_catalogue(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text("\n")
    with pytest.raises(CatalogError, match="has no rows"):
        load(path)


def test_errors_from_the_reader_pass_through(tmp_path):
    with pytest.raises(CatalogError, match="catalogue file not found"):
        load(tmp_path / "nope.csv")


@pytest.mark.parametrize("policy", ["text-only", "reject"])
def test_end_to_end_every_row_accounted_for(cat_dir, write_catalog, policy):
    """Catalogue + image loading over every kind of bad image: no row disappears."""
    from mllmrec.catalog import load_item_images

    refs = [
        "good.png",
        "truncated.png",
        "random.jpg",
        "http://x/y.png",
        "../outside/secret.png",
        "escape.png",
        "missing.png",
        "header_bomb.png",
        None,
    ]
    rows = [{"id": i, "title": f"t{i}" if i % 2 else "", "image": r} for i, r in enumerate(refs)]
    rows.append({"id": 99, "title": "", "image": None})
    cat = load(write_catalog(rows, "cat/items.jsonl"), on_bad_image=policy)
    spec = CatalogSpec(catalog=str(cat.path), text_fields=("title",), on_bad_image=policy)
    with_images, rejected = [], list(cat.rejected)
    for item in cat.items:
        images, rej = load_item_images(item, cat.base_dir, spec)
        if rej is not None:
            rejected.append(rej)
        if images is not None:
            with_images.append(item.id)
    assert with_images.count("0") == 1
    done = {r.item_id for r in rejected if r.action == "rejected"} | set(with_images)
    assert done == {str(r["id"]) for r in rows}
    assert not {r.item_id for r in rejected if r.action == "rejected"} & set(with_images)
    assert {r.item_id for r in cat.rejected} == {"8", "99"}  # neither text nor image


def test_a_lone_surrogate_in_text_becomes_the_replacement_character(tmp_path):
    """JSON's "\\ud800" loads as a lone surrogate that the tokenizer cannot encode (a TypeError that
    stopped the whole embed run; found by eval/fuzz_inputs.py): it becomes U+FFFD like bad bytes."""
    import json

    path = tmp_path / "items.jsonl"
    path.write_text(
        json.dumps({"id": "a", "title": "bad \ud800 escape", "description": "ok \U0001f600"}) + "\n"
    )
    item = load_catalog(CatalogSpec(catalog=str(path), image_field=None)).items[0]
    assert item.texts["title"] == "bad \ufffd escape" and "\U0001f600" in item.texts["description"]
    item.texts["title"].encode("utf-8")  # encodable now
