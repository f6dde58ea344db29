"""read_records: each format, its value types, and an exact error for each kind of bad file."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mllmrec.catalog import CatalogError, read_records

ROWS = [
    {"id": 1, "title": "Red mug", "image": ["a.png", "b.png"]},
    {"id": "2", "title": "Blue\u2028cup", "image": None},
]


def test_jsonl_keeps_types_lists_and_order(tmp_path, write_catalog):
    path = write_catalog(ROWS, "items.jsonl")
    path.write_text(path.read_text() + "\n   \n")  # trailing blank lines are skipped
    assert read_records(path) == ROWS  # U+2028 inside a string does not split the line


def test_json_lines_and_json_array(tmp_path, write_catalog):
    assert read_records(write_catalog(ROWS, "items.json")) == ROWS
    arr = tmp_path / "arr.json"
    arr.write_text('[\n  {"id": 1},\n  {"id": 2}\n]\n')
    assert read_records(arr) == [{"id": 1}, {"id": 2}]
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": 1}, 3]')
    with pytest.raises(CatalogError, match="element 2 .* not an object"):
        read_records(bad)


def test_jsonl_malformed_line_names_the_line(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"id": 1}\n\n{"id": 2,,}\n{"id": 3}\n')
    with pytest.raises(CatalogError, match=r"malformed JSON on line 3") as e:
        read_records(path)
    assert str(path) in str(e.value)


def test_jsonl_non_object_line(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"id": 1}\n[1, 2]\n')
    with pytest.raises(CatalogError, match="line 2 is not a JSON object"):
        read_records(path)


def test_csv_strings_and_pipe_split_only_in_list_fields(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text(
        '\ufeffid,title,image\n1,"Mug, red","a.png|b.png"\n2,"two\nlines",\n\n3,a|b,c.png\n4,short\n',
        encoding="utf-8",
    )
    rows = read_records(path, list_fields=("image",))
    assert rows == [
        {"id": "1", "title": "Mug, red", "image": ["a.png", "b.png"]},
        {"id": "2", "title": "two\nlines", "image": [""]},
        {"id": "3", "title": "a|b", "image": ["c.png"]},  # '|' kept in non-list columns
        {"id": "4", "title": "short"},  # short row: missing cells are absent
    ]
    assert read_records(path)[0]["image"] == "a.png|b.png"  # no list_fields, no split


def test_csv_duplicate_header_and_extra_cells(tmp_path):
    dup = tmp_path / "dup.csv"
    dup.write_text("id,title,title\n1,a,b\n")
    with pytest.raises(CatalogError, match="named twice in the header: title"):
        read_records(dup)
    extra = tmp_path / "extra.csv"
    extra.write_text("id,title\n1,a\n2,b,c\n")
    with pytest.raises(CatalogError, match="line 3 has 3 cells but the header has 2 columns"):
        read_records(extra)


def test_parquet_keeps_lists_and_nulls(tmp_path):
    path = tmp_path / "items.parquet"
    rows = [{"id": 1, "image": ["a.png", None]}, {"id": 2, "image": None}]
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert read_records(path) == rows


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "items.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(CatalogError, match="cannot read as Parquet"):
        read_records(path)


def test_unknown_extension_lists_supported(tmp_path):
    path = tmp_path / "items.xlsx"
    path.write_text("x")
    with pytest.raises(CatalogError, match=r"'\.xlsx'.*supported: \.jsonl, \.json, \.csv, \.parquet"):
        read_records(path)
    with pytest.raises(CatalogError, match="no extension"):
        read_records(tmp_path / "items")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CatalogError, match="catalogue file not found"):
        read_records(tmp_path / "nope.jsonl")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(CatalogError, match="not a file"):
        read_records(tmp_path / "dir.csv")


def test_invalid_utf8(tmp_path):
    path = tmp_path / "items.csv"
    path.write_bytes(b"id,title\n1,caf\xe9\n")
    with pytest.raises(CatalogError, match="not valid UTF-8"):
        read_records(path)
