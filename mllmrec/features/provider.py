"""FeatureProvider: our item vectors by raw item id, aligned to whatever id order a recommender uses.

    fp = FeatureProvider.open("store/")                    # an embedding store (or a distill run)
    X = fp.matrix(["i9", 17, "i3"], channel="visual")      # [3, d] float32, rows in the asked order
    X = fp.aligned("data/baby/i_id_mapping.csv")           # row i = the id-map's row i
    emb = fp.as_embedding(ids, freeze=True)                # nn.Embedding initialised from the vectors
    tower = fp.as_module(64, ids)                          # trainable projection  e_i = W f_i + b

Ids are matched by their string form (the store keeps ids as strings, so 17 finds "17"). An id the
source lacks follows the missing-id policy: `error` (UnknownItemError naming some ids and the
count), `zero`, `mean` (the channel's mean vector) or `new-item` (distill runs only: the student
vector the run's learned mapping computes from the item's MLLM vector). Every lookup returns, and
logs, a `LookupReport` with the counts, so a fill is never silent.

Non-finite rows (NaN/inf in the source, e.g. a model that overflowed in float16) are never handed
out: `lookup` is the one place every consumer (exports of every format, torch modules, matrices)
reads through, and it refuses them with the item ids (NonFiniteError), or, when asked with
`nonfinite="zero"|"mean"`, fills them and records the fill in the report. The channel mean is taken
over finite rows only, so `missing="mean"` never spreads a NaN.

Memory: a safetensors store is memory-mapped, and a lookup reads only the asked rows, with
positioned reads in row order (`rowio.read_rows`); the ids are matched by one vectorised scan of
the store's id column (an Arrow string array, ~16 bytes per id, no Python dict). A parquet store
has no random access, so its channel is read whole into memory on first use (use the default
safetensors format for stores larger than memory).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from mllmrec import artifacts
from mllmrec.features.rowio import ProviderError, as_id_strings, match_rows, read_rows
from mllmrec.store import ITEMS, EmbeddingStore, StoreError, UnknownItemError

log = logging.getLogger(__name__)

Policy = Literal["error", "zero", "mean", "new-item"]
POLICIES: tuple[str, ...] = ("error", "zero", "mean", "new-item")
NonFinitePolicy = Literal["error", "zero", "mean"]
NONFINITE_POLICIES: tuple[str, ...] = ("error", "zero", "mean")
STUDENT = "student"  # the channel name of a distill run's student item table
_MEAN_CHUNK = 1 << 16  # rows per block when averaging a memory-mapped channel
__all__ = ["FeatureProvider", "Lookup", "LookupReport", "NonFiniteError", "ProviderError", "as_id_strings"]


class NonFiniteError(ProviderError):
    """Source rows holding NaN or inf; the message names the items and the way out."""


@dataclass(frozen=True)
class LookupReport:
    """What one lookup found: counts per outcome and a few of the missing ids."""

    channel: str
    policy: str
    requested: int
    found: int
    missing: int
    filled: dict[str, int] = field(default_factory=dict)  # policy -> rows it filled
    missing_examples: tuple[str, ...] = ()
    nonfinite: int = 0  # found rows whose source vector held NaN/inf (filled as nonfinite_filled says)
    nonfinite_filled: dict[str, int] = field(default_factory=dict)
    nonfinite_ids: tuple[str, ...] = ()

    def __str__(self) -> str:
        s = f"{self.channel}: {self.found}/{self.requested} ids found"
        if self.missing:
            how = ", ".join(f"{n} by {p}" for p, n in self.filled.items()) or "none filled"
            s += f", {self.missing} missing ({how}; policy {self.policy}; e.g. {', '.join(self.missing_examples)})"
        if self.nonfinite:
            how = ", ".join(f"by {p}" for p in self.nonfinite_filled)
            s += f", {self.nonfinite} non-finite filled {how} (e.g. {', '.join(self.nonfinite_ids[:10])})"
        return s

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "policy": self.policy,
            "requested": self.requested,
            "found": self.found,
            "missing": self.missing,
            "filled": dict(self.filled),
            "missing_examples": list(self.missing_examples),
            "nonfinite": self.nonfinite,
            "nonfinite_filled": dict(self.nonfinite_filled),
            "nonfinite_ids": list(self.nonfinite_ids),
        }


class Lookup(NamedTuple):
    vectors: np.ndarray  # [n_ids, d]
    report: LookupReport


class FeatureProvider:
    """Item vectors from an embedding store or a distill run, looked up by raw item id."""

    def __init__(
        self,
        store: EmbeddingStore | None = None,
        *,
        run: Any = None,
        channel: str | None = None,
        path: str | Path | None = None,
    ) -> None:
        if store is None and run is None:
            raise ProviderError("FeatureProvider needs an embedding store or a distill run")
        self.store, self.run = store, run
        self.kind = "distill" if run is not None else "store"
        self.path = (
            Path(path) if path is not None else (store.path if store is not None else Path("<distill run>"))
        )
        self.channel = channel or (STUDENT if run is not None else "mm")
        self.last_report: LookupReport | None = None
        self._tables: dict[str, tuple[Any, Any]] = {}
        self._means: dict[str, np.ndarray] = {}
        self._check_channel(self.channel)

    @classmethod
    def open(
        cls, path: str | Path, *, channel: str | None = None, store: str | Path | None = None
    ) -> FeatureProvider:
        """Open an embedding store or a distill run directory (told apart by its manifest's stage).

        store: for a distill run, the embedding store whose MLLM vectors feed the new-item mapping and
        the non-student channels (default: the store the run was trained from, `run.store_path`).
        """
        try:  # any stage: a distill run is read too, and a foreign artefact gets the message below
            stage = artifacts.read_manifest(path).get("stage")
        except artifacts.ArtifactError as e:
            raise StoreError(str(e)) from None
        if stage == "embed":
            if store is not None:
                raise ProviderError("store= is only for distill runs; this path is an embedding store")
            return cls(EmbeddingStore.open(path), channel=channel)
        if stage == "distill":
            run = _open_distill_run(path)
            if (
                store is None
                and getattr(run, "store_path", None) is not None
                and Path(run.store_path).is_dir()
            ):
                store = run.store_path
            return cls(
                EmbeddingStore.open(store) if store is not None else None, run=run, channel=channel, path=path
            )
        raise ProviderError(
            f"{path} holds a {stage!r} artefact; FeatureProvider reads embedding stores "
            "(`mllmrec embed`) and distill runs (`mllmrec distill`)"
        )

    # ----------------------------------------------------------------------------------- sources
    @property
    def channels(self) -> list[str]:
        """Channels this provider can serve: the store's, plus `student` for a distill run."""
        return ([STUDENT] if self.run is not None else []) + (self.store.channels if self.store else [])

    def _check_channel(self, channel: str) -> None:
        if channel not in self.channels:
            extra = (
                "; the distill run's embedding store was not found, pass store="
                if self.run is not None and self.store is None
                else ""
            )
            raise ProviderError(
                f"channel {channel!r} is not available from {self.path} "
                f"(has {', '.join(self.channels)}){extra}"
            )

    def _table(self, channel: str) -> tuple[Any, Any]:
        """(Arrow string array of ids, [n, d] matrix) of one channel; the matrix may be a memmap."""
        self._check_channel(channel)
        if channel not in self._tables:
            import pyarrow as pa

            if channel == STUDENT:
                ids = pa.array(list(self.run.item_ids), pa.string())
                mat = self.run.item_table()
            else:
                assert self.store is not None
                key = "__store_ids__"
                if key not in self._tables:
                    import pyarrow.parquet as pq

                    col = pq.read_table(self.store.path / ITEMS, columns=["id"]).column("id")
                    self._tables[key] = (col.combine_chunks().cast(pa.string()), None)
                ids = self._tables[key][0]
                if self.store.format == "parquet":
                    log.info("%s: parquet store, reading channel %r into memory", self.store.path, channel)
                mat = self.store.vectors(channel)
            if len(ids) != mat.shape[0]:
                raise StoreError(
                    f"{self.path}: {len(ids)} ids but {mat.shape[0]} rows in channel {channel!r}"
                )
            self._tables[channel] = (ids, mat)
        return self._tables[channel]

    def ids(self, channel: str | None = None) -> list[str]:
        """All ids of a channel in source row order (materialises them as a Python list)."""
        return self._table(channel or self.channel)[0].to_pylist()

    def __len__(self) -> int:
        return len(self._table(self.channel)[0])

    def dim(self, channel: str | None = None) -> int:
        return int(self._table(channel or self.channel)[1].shape[1])

    def rows(self, ids: Sequence[str | int] | np.ndarray, channel: str | None = None) -> np.ndarray:
        """[len(ids)] int64 source rows of the ids, -1 where the source lacks an id (see `match_rows`)."""
        return match_rows(self._table(channel or self.channel)[0], ids)

    # ----------------------------------------------------------------------------------- lookups
    def lookup(
        self,
        ids: Sequence[str | int] | np.ndarray,
        *,
        channel: str | None = None,
        missing: Policy = "error",
        dtype: Any = np.float32,
        nonfinite: NonFinitePolicy = "error",
    ) -> Lookup:
        """[len(ids), d] vectors, row k = ids[k], plus a report of what was found and filled.

        nonfinite: a found row holding NaN/inf raises NonFiniteError naming the ids ("error"), or is
        filled with zeros / the finite rows' mean and counted in the report ("zero", "mean").
        """
        channel = channel or self.channel
        if missing not in POLICIES:
            raise ProviderError(f"missing-id policy {missing!r} is not one of {', '.join(POLICIES)}")
        if nonfinite not in NONFINITE_POLICIES:
            raise ProviderError(
                f"non-finite policy {nonfinite!r} is not one of {', '.join(NONFINITE_POLICIES)}"
            )
        keys = as_id_strings(ids)
        rows = self.rows(keys, channel)
        _, mat = self._table(channel)
        out = np.zeros((len(keys), mat.shape[1]), dtype=dtype or mat.dtype)  # [n_ids, d]
        have = np.flatnonzero(rows >= 0)
        order = have[np.argsort(rows[have], kind="stable")]  # read the source in row order
        if len(order):
            out[order] = read_rows(mat, rows[order])
        bad = have[~np.isfinite(out[have]).all(axis=1)]  # checked before any fill, in the asked dtype
        bad_ids = tuple(str(keys[k]) for k in bad)
        if len(bad):
            if nonfinite == "error":
                raise NonFiniteError(
                    f"{len(bad)} of {len(keys)} vectors in {self.path} (channel {channel}) hold NaN or inf: "
                    f"{', '.join(map(repr, bad_ids[:10]))}{' ...' if len(bad) > 10 else ''}; re-embed those items, or "
                    "choose a non-finite policy (zero or mean) to fill them with a record"
                )
            out[bad] = 0 if nonfinite == "zero" else self.mean(channel)
        lost = np.flatnonzero(rows < 0)
        names = [str(keys[k]) for k in lost[:10]]
        filled: dict[str, int] = {}
        if len(lost):
            if missing == "error":
                raise UnknownItemError(
                    f"{len(lost)} of {len(keys)} ids are not in {self.path} (channel {channel}), "
                    f"e.g. {', '.join(map(repr, names))}; choose a missing-id policy "
                    "(zero, mean, or new-item for a distill run) to fill them"
                )
            if missing == "mean":
                out[lost] = self.mean(channel)
            elif missing == "new-item":
                if channel != STUDENT:
                    raise ProviderError(
                        f"{len(lost)} ids are missing from channel {channel!r}, and missing='new-item' "
                        "only fills a distill run's student channel (the learned mapping from MLLM "
                        f"vectors to student vectors), e.g. {', '.join(map(repr, names))}"
                    )
                out[lost] = self._new_items([keys[k] for k in lost])
            filled[missing] = len(lost)
        if not np.isfinite(out).all():  # a fill (new-item mapping) or the cast to `dtype` made inf/NaN
            worse = np.flatnonzero(~np.isfinite(out).all(axis=1))
            raise NonFiniteError(
                f"{len(worse)} vectors from {self.path} (channel {channel}) are NaN or inf after "
                f"filling or casting to {np.dtype(out.dtype).name}: "
                f"{', '.join(repr(str(keys[k])) for k in worse[:10])}"
            )
        report = LookupReport(
            channel,
            missing,
            len(keys),
            len(keys) - len(lost),
            len(lost),
            filled,
            tuple(names),
            nonfinite=len(bad),
            nonfinite_filled={nonfinite: len(bad)} if len(bad) else {},
            nonfinite_ids=bad_ids,
        )
        (log.warning if len(lost) or len(bad) else log.info)("lookup %s", report)
        self.last_report = report
        return Lookup(out, report)

    def matrix(
        self,
        ids: Sequence[str | int] | np.ndarray | None = None,
        *,
        channel: str | None = None,
        missing: Policy = "error",
        framework: Literal["numpy", "torch"] = "numpy",
        dtype: Any = np.float32,
        nonfinite: NonFinitePolicy = "error",
    ) -> Any:
        """Vectors for `ids` (default: every id of the channel, in source order) as a numpy array or a
        torch tensor; the report is in `self.last_report`."""
        if framework not in ("numpy", "torch"):
            raise ProviderError(f"framework {framework!r} is not numpy or torch")
        if ids is None:
            ids = self._table(channel or self.channel)[0]
        vectors = self.lookup(ids, channel=channel, missing=missing, dtype=dtype, nonfinite=nonfinite).vectors
        if framework == "torch":
            import torch

            return torch.from_numpy(vectors)
        return vectors

    def vector(self, item_id: str | int, channel: str | None = None) -> np.ndarray:
        """[d] vector of one id (UnknownItemError if the source lacks it)."""
        return self.lookup([item_id], channel=channel).vectors[0]

    def aligned(
        self, id_map: str | Path | Sequence[str | int], *, id_column: str | None = None, **kw: Any
    ) -> Any:
        """`matrix` whose row i is the id the id list (or id-map file, see `idmap`) puts at row i;
        `id_column`: the map's raw-id column when it has several (default: the one this source knows)."""
        if isinstance(id_map, (str, Path)):
            from mllmrec.features.idmap import read_id_map

            id_map = read_id_map(id_map, id_column=id_column, known=lambda: self.ids(kw.get("channel")))
        return self.matrix(id_map, **kw)

    def mean(self, channel: str | None = None) -> np.ndarray:
        """[d] float64 mean of the finite vectors of a channel, summed in blocks (a memmap is never loaded
        whole); rows holding NaN/inf are left out, so a fill with the mean is always finite."""
        channel = channel or self.channel
        if channel not in self._means:
            _, mat = self._table(channel)
            total, count = np.zeros(mat.shape[1], np.float64), 0
            for start in range(0, mat.shape[0], _MEAN_CHUNK):
                block = read_rows(mat, np.arange(start, min(start + _MEAN_CHUNK, mat.shape[0]))).astype(
                    np.float64
                )
                ok = np.isfinite(block).all(axis=1)  # [rows]
                total += block[ok].sum(axis=0)
                count += int(ok.sum())
            if count == 0:
                raise ProviderError(
                    f"channel {channel!r} of {self.path} has no finite vector: no mean to fill with"
                )
            self._means[channel] = total / count
        return self._means[channel]

    def _new_items(self, ids: list[str]) -> np.ndarray:
        """Student vectors of items absent from the tables, via the run's learned mapping."""
        return np.asarray(self.run.new_item_vectors(ids, store=self.store))

    # ----------------------------------------------------------------------------------- torch
    def as_embedding(
        self,
        ids: Sequence[str | int] | None = None,
        *,
        freeze: bool = True,
        channel: str | None = None,
        missing: Policy = "error",
    ) -> Any:
        """`torch.nn.Embedding` whose row k is the vector of ids[k] (default: all ids, source order)."""
        import torch

        weights = self.matrix(ids, channel=channel, missing=missing, framework="torch")  # [n, d]
        return torch.nn.Embedding.from_pretrained(weights, freeze=freeze)

    def as_module(
        self,
        out_dim: int,
        ids: Sequence[str | int] | None = None,
        *,
        channel: str | None = None,
        missing: Policy = "error",
        freeze_features: bool = True,
        bias: bool = True,
        normalize: bool = False,
    ) -> Any:
        """A small trainable module over the vectors: item index k -> W f_k + b, [out_dim].

        The features are a frozen embedding (unless freeze_features=False); only W and b train, so
        the module is a drop-in item tower for a two-tower or sequential model.
        """
        from mllmrec.features.modules import FeatureProjection

        keys = self.ids(channel) if ids is None else as_id_strings(ids)
        ids = keys.to_pylist() if hasattr(keys, "to_pylist") else list(keys)
        weights = self.matrix(ids, channel=channel, missing=missing, framework="torch")  # [n, d]
        return FeatureProjection(
            weights, out_dim, ids=ids, freeze_features=freeze_features, bias=bias, normalize=normalize
        )


def _open_distill_run(path: str | Path) -> Any:
    """The distill run at `path` through the distill stage's reader (`mllmrec.distill.artifact`)."""
    try:
        from mllmrec.distill.artifact import DistillRun  # type: ignore[import-not-found]
    except ModuleNotFoundError as e:
        if e.name not in ("mllmrec.distill", "mllmrec.distill.artifact"):
            raise
        raise ProviderError(
            f"{path} is a distill run, but reading distill runs is not supported by this "
            "installation yet: it needs mllmrec.distill.artifact (the distill stage)"
        ) from None
    return DistillRun.open(path)
