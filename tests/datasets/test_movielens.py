"""ML-100K preparation on a miniature wheel/folder built in code (the real data is never needed)."""

from __future__ import annotations

import csv
import json
import zipfile

import pytest

from mllmrec.datasets.movielens import DatasetNotFound, find_ml100k, prepare_ml100k

ITEMS = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n1\tToy Story\t1995\tAnimation Children's Comedy\n2\tGoldenEye\t1995\tAction Adventure Thriller\n3\tUntitled\t\t\n"
INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t1\t3\t881250949\n22\t2\t1\t878887116\n"
)


def _wheel(folder):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "recbole-1.2.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("recbole/dataset_example/ml-100k/ml-100k.item", ITEMS)
        z.writestr("recbole/dataset_example/ml-100k/ml-100k.inter", INTER)
    return path


@pytest.mark.parametrize("layout", ["wheel", "folder-with-wheel", "extracted"])
def test_prepare_reads_every_layout(tmp_path, layout):
    if layout == "extracted":
        src = tmp_path / "raw"
        src.mkdir()
        (src / "ml-100k.item").write_text(ITEMS)
        (src / "ml-100k.inter").write_text(INTER)
        place = src
    else:
        wheel = _wheel(tmp_path / "data")
        place = wheel if layout == "wheel" else wheel.parent
    found = find_ml100k([tmp_path / "nowhere", place])
    ds = prepare_ml100k(found, tmp_path / "out")
    items = [json.loads(line) for line in ds.catalog.read_text().splitlines()]
    assert items[0] == {
        "id": "1",
        "title": "Toy Story",
        "description": "1995. Genres: Animation, Children's, Comedy",
    }
    assert items[2] == {"id": "3", "title": "Untitled", "description": ""}
    rows = list(csv.reader(ds.interactions.read_text().splitlines()))
    assert rows == [
        ["user_id", "item_id", "rating", "timestamp"],
        ["196", "1", "3", "881250949"],
        ["22", "2", "1", "878887116"],
    ]
    assert (ds.n_items, ds.n_interactions) == (3, 2)


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFound, match="pip download --no-deps recbole==1.2.1"):
        find_ml100k([tmp_path])


def test_genres_layout_puts_the_year_in_the_title(tmp_path):
    ds = prepare_ml100k(_wheel(tmp_path / "data"), tmp_path / "out", text="genres")
    items = [json.loads(line) for line in ds.catalog.read_text().splitlines()]
    assert ds.catalog.name == "items-genres.jsonl"
    assert items[0] == {"id": "1", "title": "Toy Story (1995)", "genres": "Animation, Children's, Comedy"}
    assert items[2] == {"id": "3", "title": "Untitled", "genres": ""}
