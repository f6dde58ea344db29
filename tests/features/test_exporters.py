"""Every registered exporter, without a hand-written list: it writes a tiny store, its output reads
back with rows aligned to ids, its options are real config fields, and its flags are refused for
other formats."""

from __future__ import annotations

import dataclasses
import typing

import numpy as np
import pytest

from mllmrec.config import ConfigError
from mllmrec.features.config import ExportConfig
from mllmrec.features.export import run_export, verify_export
from mllmrec.features.exporters import EXPORTERS
from mllmrec.testing.stores import write_array_store

IDS = [f"i{k}" for k in range(8)]
FIELDS = {f.name: f for f in dataclasses.fields(ExportConfig)}
HINTS = typing.get_type_hints(ExportConfig)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("exporters")
    rng = np.random.default_rng(0)
    vecs = {c: rng.normal(size=(8, 5)).astype(np.float32) for c in ("mm", "visual")}
    log = root / "log.csv"  # scrambled item order; every user saw every item, so a split keeps them all
    log.write_text(
        "user_id,item_id\n" + "".join(f"u{u},{IDS[(3 * k + u) % 8]}\n" for u in range(10) for k in range(8))
    )
    return write_array_store(root / "store", IDS, vecs), vecs, log


@pytest.mark.parametrize("name", list(EXPORTERS))
def test_every_exporter_writes_rows_aligned_to_ids(tmp_path, source, name):
    store, vecs, log = source
    m = run_export(
        ExportConfig(source=str(store), format=name, out=str(tmp_path / name), interactions=str(log))
    )
    ids, arrays = EXPORTERS[name].read(tmp_path / name, m)
    assert len(ids) == m["rows"] > 0 and set(ids) <= set(IDS) and len(set(ids)) == len(ids)
    assert set(arrays) == set(m["channels"])
    for array, matrix in arrays.items():
        want = vecs[m["channels"][array]][[IDS.index(i) for i in ids]]  # [rows, d]
        np.testing.assert_allclose(matrix, want, rtol=1e-6)
    assert verify_export(tmp_path / name)["format"] == name


def test_format_choices_are_the_registry():
    assert typing.get_args(HINTS["format"]) == tuple(EXPORTERS)
    for e in EXPORTERS.values():
        assert e.help.startswith(f"{e.name} ") and e.help in FIELDS["format"].metadata["help"]


@pytest.mark.parametrize("name", list(EXPORTERS))
def test_options_are_config_fields(name):
    e = EXPORTERS[name]
    assert set(e.flags) <= set(FIELDS), "an exporter claims a field ExportConfig does not have"
    assert set(e.flags.values()) == {f.name for f in dataclasses.fields(e.Options)}
    e.options(ExportConfig(source="s", format=name, out="o"))  # builds from the defaults


def _other_value(field: str):
    tp, default = HINTS[field], FIELDS[field].default
    if typing.get_origin(tp) is typing.Literal:
        return next(v for v in typing.get_args(tp) if v != default)
    return default + 1 if isinstance(default, int) else f"{default}-x"


@pytest.mark.parametrize(
    ("field", "owner", "other"),
    [
        (f, e.name, o)
        for e in EXPORTERS.values()
        for f in e.flags
        for o in EXPORTERS
        if f not in EXPORTERS[o].flags
    ],
)
def test_a_formats_flag_is_refused_for_another_format(field, owner, other):
    with pytest.raises(ConfigError, match=f"--{field.replace('_', '-')} applies to --format .*{owner}"):
        ExportConfig(source="s", format=other, out="o", **{field: _other_value(field)})
    ExportConfig(source="s", format=owner, out="o", **{field: _other_value(field)})  # its own format takes it
