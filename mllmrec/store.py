"""The embedding store: what `mllmrec embed` writes and every downstream stage reads.

Layout of a store directory:

    manifest.json                 stage, version, config, backbone, prompt, dims, counts, rejected
    vectors.safetensors           {channel: [n, d]} in catalogue order   (or vectors.parquet)
    items.parquet                 id (str), label (first text field, for display), in the same order
    items.idindex.*               sorted ids for lookup without a dict (a cache, rebuilt when stale)
    shards/shard-000123.safetensors   work in progress; removed once the store is complete

Shards are written to a temporary name and renamed into place, so a shard file either exists
whole or not at all: after a crash (even `kill -9`) a resumed run redoes only the missing shards.
A shard holds the vectors of the items it embedded plus, in its metadata, their ids and the
shard's rejected items, so the final manifest can account for every input item.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mllmrec import artifacts
from mllmrec.errors import MllmrecError
from mllmrec.filecheck import DamagedFileError, expect_equal, parquet_rows, safetensors_shapes
from mllmrec.fsutil import atomic_path, atomic_write_bytes

if TYPE_CHECKING:
    from mllmrec.ids import IdIndex

SHARDS = "shards"
ITEMS = "items.parquet"
ID_INDEX = "items.idindex"  # sorted ids for lookup, a cache of items.parquet (mllmrec.ids)
VECTOR_FILES = {"safetensors": "vectors.safetensors", "parquet": "vectors.parquet"}


class StoreError(artifacts.ArtifactError):
    """A store is missing, incomplete or does not match what the caller expects."""


class DamagedStoreError(StoreError, DamagedFileError):
    """A store file is truncated, unreadable or disagrees with the manifest (the message names it)."""


REEMBED = "re-embed with `mllmrec embed ... --overwrite` (or restore the folder from a copy)"
REDO_SHARD = "`mllmrec embed ... --resume` redoes a damaged shard"


class UnknownItemError(MllmrecError, KeyError):
    """An item id that is not in the store (the message says whether it was rejected, and why)."""

    def __str__(self) -> str:  # KeyError's str() would add quotes around the message
        return str(self.args[0]) if self.args else ""


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the store at `path` (refuses a folder of another stage)."""
    try:
        return artifacts.read_manifest(path, expect_stage="embed")
    except artifacts.ArtifactError as e:
        raise StoreError(str(e)) from None


# ---------------------------------------------------------------------------------------------
# Shards (work in progress)
# ---------------------------------------------------------------------------------------------
def shard_path(out: Path, index: int) -> Path:
    return out / SHARDS / f"shard-{index:06d}.safetensors"


def write_shard(
    out: Path, index: int, ids: list[str], vectors: dict[str, np.ndarray], rejected: list[dict[str, str]]
) -> None:
    """Write one finished shard atomically. vectors: {channel: [len(ids), d]}."""
    from safetensors.numpy import save

    for ch, v in vectors.items():
        if v.shape[0] != len(ids):
            raise ValueError(f"shard {index}: channel {ch} has {v.shape[0]} rows for {len(ids)} ids")
    meta = {"ids": json.dumps(ids), "rejected": json.dumps(rejected)}
    data = save({ch: np.ascontiguousarray(v) for ch, v in vectors.items()}, metadata=meta)
    (out / SHARDS).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(shard_path(out, index), data)


def read_shard(path: Path) -> tuple[list[str], dict[str, np.ndarray], list[dict[str, str]]]:
    """One shard's (ids, {channel: [n, d]}, rejected); DamagedStoreError naming the shard if damaged."""
    from safetensors import safe_open

    _check(safetensors_shapes, path, REDO_SHARD)
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata()
            vectors = {k: f.get_tensor(k) for k in f.keys()}
        ids, rejected = json.loads(meta["ids"]), json.loads(meta["rejected"])
    except Exception as e:  # noqa: BLE001 - safetensors' own error types, bad metadata
        raise DamagedStoreError(f"{path}: damaged shard ({type(e).__name__}: {e}); {REDO_SHARD}") from None
    for ch, v in vectors.items():
        _check(
            expect_equal,
            f"{path}: rows of channel {ch!r} vs ids in its metadata",
            v.shape[0],
            len(ids),
            REDO_SHARD,
        )
    return ids, vectors, rejected


def drop_damaged_shards(out: Path) -> list[Path]:
    """Delete finished-looking shards that cannot be read (truncated, bad header or metadata), so a
    resumed run embeds them again; returns them. Only whole shards are ever renamed into place, so
    this is damage from outside (disk, copying), not a crash."""
    bad = []
    for k in sorted(done_shards(out)):
        try:
            read_shard(shard_path(out, k))
        except DamagedStoreError:
            shard_path(out, k).unlink()
            bad.append(shard_path(out, k))
    return bad


def _check(fn: Any, *args: Any) -> Any:
    """Run a filecheck function, turning its error into a DamagedStoreError (a StoreError)."""
    try:
        return fn(*args)
    except DamagedFileError as e:
        raise DamagedStoreError(str(e)) from None


def done_shards(out: Path) -> set[int]:
    d = out / SHARDS
    if not d.is_dir():
        return set()
    return {int(p.stem.split("-")[1]) for p in d.glob("shard-*.safetensors")}


def clean_partial_files(out: Path) -> int:
    """Remove temporary files left by a killed run; returns how many."""
    n = 0
    for d in (out, out / SHARDS):
        if d.is_dir():
            for p in d.glob(".*.tmp-*"):
                p.unlink(missing_ok=True)
                n += 1
    return n


# ---------------------------------------------------------------------------------------------
# Final store
# ---------------------------------------------------------------------------------------------
def write_vectors(
    out: Path, fmt: str, ids: list[str], labels: list[str], vectors: dict[str, np.ndarray]
) -> None:
    """Write the consolidated vectors and items table atomically (vectors first, items second)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if fmt == "safetensors":
        from safetensors.numpy import save

        atomic_write_bytes(
            out / VECTOR_FILES[fmt], save({c: np.ascontiguousarray(v) for c, v in vectors.items()})
        )
    else:
        cols = {"id": pa.array(ids, pa.string())}
        for ch, v in vectors.items():
            flat = pa.array(v.reshape(-1))
            cols[ch] = pa.FixedSizeListArray.from_arrays(flat, v.shape[1])
        _write_parquet(out / VECTOR_FILES[fmt], pa.table(cols), pq)
    _write_parquet(
        out / ITEMS, pa.table({"id": pa.array(ids, pa.string()), "label": pa.array(labels, pa.string())}), pq
    )


def _write_parquet(path: Path, table: Any, pq: Any) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


@dataclass
class EmbeddingStore:
    """Read side of a complete store. `vectors()` memory-maps safetensors stores."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> EmbeddingStore:
        path = Path(path)
        manifest = read_manifest(path)
        if manifest.get("status") != "complete":
            raise StoreError(
                f"{path} is an unfinished store (status {manifest.get('status')!r}); "
                "finish it with `mllmrec embed ... --resume`"
            )
        verify_store(path, manifest)
        return cls(path, manifest)

    @property
    def channels(self) -> list[str]:
        return list(self.manifest["channels"])

    @property
    def format(self) -> str:
        return self.manifest["config"]["format"]

    def _items(self):
        import pyarrow.parquet as pq

        if not hasattr(self, "_items_table"):
            stat = (self.path / ITEMS).stat()  # before the read: a later rewrite makes the cache stale
            self._items_stat = {
                "items_bytes": stat.st_size,
                "items_mtime_ns": stat.st_mtime_ns,
                "items_inode": stat.st_ino,  # an atomic rewrite renames a new file in
            }
            self._items_table = pq.read_table(self.path / ITEMS)
        return self._items_table

    @property
    def ids(self) -> list[str]:
        return self._items().column("id").to_pylist()

    def id_array(self) -> Any:
        """The ids as one pyarrow string array (no Python object per id), combined once."""
        if getattr(self, "_id_array", None) is None:
            self._id_array = self._items().column("id").combine_chunks()
        return self._id_array

    @property
    def labels(self) -> list[str]:
        return self._items().column("label").to_pylist()

    def label_of(self, rows: Any) -> list[str]:
        """Labels of the given store rows."""
        return self._items().column("label").take(np.asarray(rows, np.int64)).to_pylist()

    def id_index(self) -> IdIndex:
        """The store's ids, sorted for lookup (mllmrec.ids): loaded memory-mapped from
        items.idindex.* in the store folder when those match items.parquet, else built and saved
        there (a read-only folder keeps it in memory). No dict of all ids is built."""
        if getattr(self, "_id_index", None) is None:
            from mllmrec.ids import IdIndex

            ids = self.id_array()
            meta = {"format": 1, **self._items_stat}  # of the items.parquet that `ids` came from
            ix = IdIndex.load(self.path, ID_INDEX, meta)
            if ix is None:
                ix = IdIndex.build(ids)
                try:
                    ix.save(self.path, ID_INDEX, meta)
                except OSError:
                    pass  # read-only store: the index lives in memory for this process
            self._id_index = ix
        return self._id_index

    def positions(self, ids: Any) -> np.ndarray:
        """[len(ids)] store row of each id (str sequence or pyarrow array), -1 where absent."""
        return self.id_index().positions(ids)

    def index_of(self, item_id: str | int) -> int:
        row = self.id_index().position(str(item_id))
        if row >= 0:
            return row
        why = next((r["reason"] for r in self.manifest.get("rejected", []) if r["id"] == str(item_id)), None)
        extra = f": it was rejected at embed time ({why})" if why else ""
        raise UnknownItemError(f"item {item_id!r} is not in the store {self.path}{extra}")

    def vectors(self, channel: str = "mm", *, mmap: bool = True) -> np.ndarray:
        """[n, d] vectors of one channel, in store order (memory-mapped for safetensors)."""
        if channel not in self.channels:
            raise StoreError(f"channel {channel!r} not in store {self.path} (has {', '.join(self.channels)})")
        if self.format == "parquet":
            import pyarrow.parquet as pq

            col = pq.read_table(self.path / VECTOR_FILES["parquet"], columns=[channel]).column(channel)
            flat = col.combine_chunks().flatten().to_numpy(zero_copy_only=False)
            dim = self.manifest.get("dims", {}).get(channel, -1)  # an empty store needs the dim to reshape
            return flat.reshape(len(col), dim)
        return read_safetensors_tensor(self.path / VECTOR_FILES["safetensors"], channel, mmap=mmap)


def verify_store(path: Path, manifest: dict[str, Any]) -> None:
    """Check a complete store's files against its manifest from headers and footers only: the vectors
    file holds every channel at [embedded, dim], items.parquet has one row per vector."""
    try:
        n = (manifest.get("counts") or {}).get(
            "embedded"
        )  # absent in hand-made stores: items.parquet decides
        n = None if n is None else int(n)
        dims = {ch: int(manifest["dims"][ch]) for ch in manifest["channels"]}
        fmt = manifest["config"]["format"]
        vec = path / VECTOR_FILES[fmt]
    except (KeyError, TypeError, ValueError) as e:
        raise DamagedStoreError(
            f"{path / artifacts.MANIFEST}: lacks or garbles {e} (counts, dims, channels, format); {REEMBED}"
        ) from None
    rows, _ = _check(parquet_rows, path / ITEMS, REEMBED)
    n = rows if n is None else n
    _check(expect_equal, f"{path / ITEMS}: rows", rows, n, REEMBED)
    if fmt == "safetensors":
        shapes = _check(safetensors_shapes, vec, REEMBED)
        for ch, d in dims.items():
            _check(expect_equal, f"{vec}: shape of channel {ch!r}", shapes.get(ch), [n, d], REEMBED)
    else:
        rows, cols = _check(parquet_rows, vec, REEMBED)
        _check(expect_equal, f"{vec}: rows", rows, n, REEMBED)
        lacking = [ch for ch in dims if ch not in cols]
        _check(expect_equal, f"{vec}: channels missing", lacking, [], REEMBED)


_NP_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "F64": np.float64}


def read_safetensors_tensor(path: Path, name: str, *, mmap: bool = True) -> np.ndarray:
    """One tensor of a safetensors file; with mmap=True a read-only np.memmap (no full load).

    The format is an 8-byte little-endian header length, a JSON header with dtype/shape/offsets,
    then the raw C-order data, which maps straight onto np.memmap.
    """
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    info = header[name]
    dtype = _NP_DTYPES.get(info["dtype"])
    if dtype is None:
        raise StoreError(f"{path}: dtype {info['dtype']} of {name!r} is not supported")
    start, end = info["data_offsets"]
    shape = tuple(info["shape"])
    if mmap:
        return np.memmap(path, dtype=dtype, mode="r", offset=8 + n + start, shape=shape)
    with open(path, "rb") as f:
        f.seek(8 + n + start)
        return np.frombuffer(f.read(end - start), dtype=dtype).reshape(shape)


def concat_shards(out: Path, n_shards: int) -> tuple[list[str], dict[str, np.ndarray], list[dict[str, str]]]:
    """Read shards 0..n-1 in order: (ids, {channel: [n, d]}, rejected)."""
    ids: list[str] = []
    parts: dict[str, list[np.ndarray]] = {}
    rejected: list[dict[str, str]] = []
    for k in range(n_shards):
        s_ids, s_vec, s_rej = read_shard(shard_path(out, k))
        ids += s_ids
        rejected += s_rej
        for ch, v in s_vec.items():
            parts.setdefault(ch, []).append(v)
    return ids, {ch: np.concatenate(v) for ch, v in parts.items()}, rejected
