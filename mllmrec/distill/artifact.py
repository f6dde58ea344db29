"""The distill run directory: what `mllmrec distill` writes and serving and the exporters read.

    manifest.json          stage "distill", mllmrec version, config, source store (path, manifest
                           sha256, identity), teacher/student kinds, dims, counts, validation metrics
                           and selected epochs, test metrics (read once, after selection), new-item
                           mapping info; written last
    tables.safetensors     user [n_users, d], item [n_items, d] (float32): s(u, i) = user · item
    users.parquet          id (string); row i = table row i          (the same for items.parquet)
    items.parquet          id (string); only items with training interactions have table rows
    new_items.safetensors  the learned mapping from MLLM vectors to student item vectors
    popularity.npy         [n_items] int64 training interactions per table item (fallback ranking)
    seen.parquet           user (int64 table row), item (string id): every logged interaction,
                           so recommendations can leave out what a user has already seen

`DistillRun.open` refuses a directory that is not a complete run, or whose files disagree with its
manifest, saying what differs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mllmrec.artifacts import MANIFEST, ArtifactError, read_manifest, write_manifest
from mllmrec.config import diff_values
from mllmrec.distill.errors import DistillError
from mllmrec.fsutil import atomic_path, atomic_write_bytes
from mllmrec.store import EmbeddingStore, UnknownItemError

if TYPE_CHECKING:
    from mllmrec.ids import IdIndex

STAGE = "distill"
MAP_BATCH = 65_536  # store rows mapped to student vectors per step (new_item_vectors_at)
FILES = {
    "tables": "tables.safetensors",
    "users": "users.parquet",
    "items": "items.parquet",
    "new_items": "new_items.safetensors",
    "popularity": "popularity.npy",
    "seen": "seen.parquet",
}


def store_fingerprint(store: EmbeddingStore) -> str:
    """sha256 of the store's manifest.json bytes: any re-embedding changes it."""
    return hashlib.sha256((store.path / MANIFEST).read_bytes()).hexdigest()


def store_compat(store: EmbeddingStore) -> dict[str, Any]:
    """What must match for the new-item mapping to apply to another store's vectors: the same
    backbone, prompt and fusion gate (the catalogue may differ: that is the point of new items)."""
    ident = store.manifest.get("identity") or {}
    return {
        "backbone": ident.get("backbone"),
        "prompt": ident.get("prompt"),
        "fusion_gate": ident.get("fusion_gate"),
        "dims": store.manifest.get("dims"),
    }


def _short(value: Any, limit: int = 60) -> str:
    """A value for a one-line message (fingerprints and dicts cut to `limit` characters)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _write_parquet(path: Path, columns: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(pa.table(columns), str(tmp))


def write_run(
    out: Path,
    manifest: dict[str, Any],
    *,
    user_ids: Sequence[str],
    item_ids: Sequence[str],
    user_table: np.ndarray,
    item_table: np.ndarray,
    mapping_tensors: dict[str, Any],
    popularity: np.ndarray,
    seen_users: np.ndarray,
    seen_items: Sequence[str],
) -> None:
    """Write every file atomically, the manifest last (the folder is made ready by
    `mllmrec.artifacts.prepare_dir` first, under its writer lock)."""
    import pyarrow as pa
    from safetensors.numpy import save

    if (
        user_table.shape[0] != len(user_ids)
        or item_table.shape[0] != len(item_ids)
        or popularity.shape != (len(item_ids),)
    ):
        raise DistillError("table rows, id lists and popularity do not line up")
    atomic_write_bytes(
        out / FILES["tables"],
        save(
            {
                "user": np.ascontiguousarray(user_table, np.float32),
                "item": np.ascontiguousarray(item_table, np.float32),
            }
        ),
    )
    _write_parquet(out / FILES["users"], {"id": pa.array([str(u) for u in user_ids], pa.string())})
    _write_parquet(out / FILES["items"], {"id": pa.array([str(i) for i in item_ids], pa.string())})
    atomic_write_bytes(
        out / FILES["new_items"],
        save(
            {
                k: np.ascontiguousarray(v.numpy() if hasattr(v, "numpy") else v)
                for k, v in mapping_tensors.items()
            }
        ),
    )
    with atomic_path(out / FILES["popularity"]) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(popularity, np.int64))
    _write_parquet(
        out / FILES["seen"],
        {
            "user": np.asarray(seen_users, np.int64),
            "item": pa.array([str(i) for i in seen_items], pa.string()),
        },
    )
    write_manifest(out, {**manifest, "status": "complete"}, stage=STAGE)


class DistillRun:
    """Read side of a distill run directory (module docstring)."""

    def __init__(
        self, path: Path, manifest: dict[str, Any], user_ids: list[str], item_ids: list[str]
    ) -> None:
        self.path, self.manifest = path, manifest
        self.user_ids, self.item_ids = user_ids, item_ids
        self.dim = int(manifest["dims"]["student"])
        self._index: dict[str, IdIndex] = {}  # "user"/"item" -> sorted ids (mllmrec.ids), built on use

    @classmethod
    def open(cls, path: str | Path) -> DistillRun:
        path = Path(path)
        try:
            manifest = read_manifest(path, expect_stage=STAGE)
        except ArtifactError as e:
            raise DistillError(str(e)) from None
        if manifest.get("status", "complete") != "complete":  # runs before the status key were complete
            raise DistillError(
                f"{path}: the distill run did not finish (status {manifest['status']!r}); "
                "run `mllmrec distill ... --overwrite` again"
            )
        missing = [n for n in FILES.values() if not (path / n).is_file()]
        if missing:
            raise DistillError(f"{path}: distill run is incomplete, missing {', '.join(missing)}")
        import pyarrow.parquet as pq

        from mllmrec.filecheck import DamagedFileError, parquet_rows

        try:  # a damaged id list is named here, not by pyarrow's traceback
            for name in ("users", "items", "seen"):
                parquet_rows(path / FILES[name], "re-run `mllmrec distill ... --overwrite`")
        except DamagedFileError as e:
            raise DistillError(str(e)) from None
        users = [
            str(x) for x in pq.read_table(path / FILES["users"], columns=["id"]).column("id").to_pylist()
        ]
        items = [
            str(x) for x in pq.read_table(path / FILES["items"], columns=["id"]).column("id").to_pylist()
        ]
        run = cls(path, manifest, users, items)
        shapes = _safetensors_shapes(path / FILES["tables"])
        expect = {"user": [len(users), run.dim], "item": [len(items), run.dim]}
        want = {
            "user": [manifest["counts"]["users"], run.dim],
            "item": [manifest["counts"]["items"], run.dim],
        }
        diff = [
            f"{k}: file {shapes.get(k)}, id list {expect[k]}, manifest {want[k]}"
            for k in expect
            if not (shapes.get(k) == expect[k] == want[k])
        ]
        if diff:
            raise DistillError(
                f"{path}: tables, id lists and manifest disagree ({'; '.join(diff)}); re-run distill"
            )
        return run

    @property
    def store_path(self) -> Path | None:
        p = self.manifest.get("store", {}).get("path")
        return Path(p) if p else None

    def user_table(self) -> np.ndarray:
        return _read_tensor(self.path / FILES["tables"], "user")  # [n_users, d]

    def item_table(self) -> np.ndarray:
        return _read_tensor(self.path / FILES["tables"], "item")  # [n_items, d]

    def popularity(self) -> np.ndarray:
        return np.load(self.path / FILES["popularity"])  # [n_items]

    def seen(self) -> tuple[np.ndarray, Any]:
        """(user table rows [m], item ids [m] as a pyarrow string array) of every logged interaction
        (no Python string per interaction: a batch run over 1M users reads 20M of them)."""
        import pyarrow.parquet as pq

        t = pq.read_table(self.path / FILES["seen"])
        return t.column("user").to_numpy(), t.column("item").combine_chunks()

    def _rows(self, kind: str, ids: Any) -> np.ndarray:
        if kind not in self._index:
            from mllmrec.ids import IdIndex

            self._index[kind] = IdIndex.build(self.user_ids if kind == "user" else self.item_ids)
        return self._index[kind].positions(ids)

    def user_rows(self, user_ids: Any) -> np.ndarray:
        """[len(user_ids)] user table row of each id, -1 for users the run does not know."""
        return self._rows("user", user_ids)

    def item_rows(self, item_ids: Any) -> np.ndarray:
        """[len(item_ids)] item table row of each id, -1 for items without a row."""
        return self._rows("item", item_ids)

    def user_index_of(self, user_id: str | int) -> int | None:
        row = int(self.user_rows([str(user_id)])[0])
        return row if row >= 0 else None

    def item_index_of(self, item_id: str | int) -> int:
        row = int(self.item_rows([str(item_id)])[0])
        if row < 0:
            raise UnknownItemError(
                f"item {item_id!r} has no row in the tables of {self.path} (no training "
                "interactions); new_item_vectors() maps it from its MLLM vectors"
            )
        return row

    def mapping(self) -> Any:
        from safetensors.torch import load_file

        from mllmrec.distill.mapping import NewItemMapping

        info = self.manifest["new_items"]
        return NewItemMapping.from_tensors(
            load_file(str(self.path / FILES["new_items"])), info["channels"], info["l2"]
        )

    def open_store(self, store: EmbeddingStore | str | Path | None = None) -> EmbeddingStore:
        """The given store (or the one the run was trained on), checked to fit the mapping."""
        if store is None:
            if self.store_path is None or not (self.store_path / MANIFEST).is_file():
                raise DistillError(
                    f"the store this run was trained on ({self.store_path}) is gone; pass another "
                    "store embedded with the same model and prompt"
                )
            store = self.store_path
        st = store if isinstance(store, EmbeddingStore) else EmbeddingStore.open(store)
        recorded, now = self.manifest["store"]["compat"], store_compat(st)
        channels = self.manifest["new_items"]["channels"]
        keys = ("backbone", "prompt", "fusion_gate")
        diff = diff_values(
            {k: recorded.get(k) for k in keys}
            | {"dims": {c: (recorded.get("dims") or {}).get(c) for c in channels}},
            {k: now.get(k) for k in keys} | {"dims": {c: (now.get("dims") or {}).get(c) for c in channels}},
        )
        if diff:
            said = "; ".join(f"{k}: run's store {_short(a)}, this store {_short(b)}" for k, a, b in diff[:4])
            more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
            raise DistillError(
                f"store {st.path} was not embedded like the run's store ({said}{more}); "
                "the new-item mapping only applies to vectors of the same model and prompt"
            )
        return st

    def new_item_vectors(self, ids: Sequence[str | int], store: EmbeddingStore | None = None) -> np.ndarray:
        """[len(ids), d] student-space vectors mapped from the items' MLLM vectors in `store` (default:
        the run's store). An id absent from the store but in the tables gets its table row; an id in
        neither raises UnknownItemError."""
        st = self.open_store(store)
        keys = [str(i) for i in ids]
        rows = st.positions(keys)
        out = np.zeros((len(keys), self.dim), np.float32)
        absent = np.flatnonzero(rows < 0)
        if absent.size:
            table_rows = self.item_rows([keys[n] for n in absent])
            if (table_rows < 0).any():
                item = keys[absent[np.flatnonzero(table_rows < 0)[0]]]
                raise UnknownItemError(
                    f"item {item!r} is neither in the store {st.path} nor in the run's tables"
                )
            out[absent] = self.item_table()[table_rows]
        present = np.flatnonzero(rows >= 0)
        if present.size:
            out[present] = self.new_item_vectors_at(rows[present], st)
        return out

    def new_item_vectors_at(
        self, rows: np.ndarray, store: EmbeddingStore, batch: int = MAP_BATCH
    ) -> np.ndarray:
        """[len(rows), d] the mapping applied to the given rows of `store` (an opened, checked store),
        `batch` rows at a time, so memory holds one batch of MLLM vectors, not the catalogue's."""
        mapping = self.mapping()
        vectors = {c: store.vectors(c) for c in mapping.channels}  # memory-mapped for safetensors
        n = len(next(iter(vectors.values())))
        if len(rows) and (int(np.min(rows)) < 0 or int(np.max(rows)) >= n):
            raise DistillError(f"store rows must be in 0..{n - 1} (an id not found is -1: look it up first)")
        out = np.empty((len(rows), self.dim), np.float32)
        for start in range(0, len(rows), batch):
            part = np.asarray(rows[start : start + batch])
            order = np.argsort(part, kind="stable")  # ascending rows read the memory map in sequence
            feats = {c: np.asarray(v[part[order]], np.float32) for c, v in vectors.items()}
            out[start + order] = mapping(feats).numpy()
        return out


def _safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor shapes from the header, after checking the file holds every byte it promises."""
    from mllmrec.filecheck import DamagedFileError, safetensors_shapes

    try:
        return safetensors_shapes(path, "re-run `mllmrec distill ... --overwrite`")
    except DamagedFileError as e:
        raise DistillError(str(e)) from None


def _read_tensor(path: Path, name: str) -> np.ndarray:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        return f.get_tensor(name)
