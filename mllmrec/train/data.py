"""Training data: mined pairs joined to the catalogue, checked once, then served batch by batch.

Every pair whose items cannot be used is reported, never dropped silently: ids not in the
catalogue, items the catalogue loader rejected, items whose image fails under `--on-bad-image
reject` (or have nothing left to render), items the prompt cannot render. Items whose image fails
under `text-only` train from their text and are listed as degraded.

Data order is a pure function of (seed, step): step k reads slice k mod E of the permutation of
epoch k // E (E = full batches per epoch; the incomplete tail of each epoch's permutation is not
used). Modality dropout draws from a generator seeded by (seed, step). So a resumed run sees the
same batches as an uninterrupted one.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mllmrec.errors import MllmrecError
from mllmrec.fsutil import file_sha256
from mllmrec.train.validate import I2IProtocol, i2i_protocol
from mllmrec.types import Item, RenderedItem

if TYPE_CHECKING:
    from mllmrec.backbone.base import Encoder

N_EXAMPLES = 5


class TrainDataError(MllmrecError, ValueError):
    """The pairs or the catalogue cannot be used for training; the message says why."""


@dataclass
class PairData:
    items: dict[str, Item]
    train: np.ndarray  # [m, 2] object: unordered training pairs (query, partner), deduplicated
    protocols: dict[str, I2IProtocol]  # "valid" / "test" i2i protocols
    text_only: set[str]  # items that train without their (bad) image
    report: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)


def _examples(ids: set[str] | list[str]) -> list[str]:
    return sorted(ids)[:N_EXAMPLES]


def read_pairs(pairs_dir: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """pairs.parquet columns as arrays, and the pairs manifest."""
    import pyarrow.parquet as pq

    from mllmrec.artifacts import ArtifactError, read_manifest

    d = Path(pairs_dir)
    path = d / "pairs.parquet"
    try:
        manifest = read_manifest(d, expect_stage="pairs")  # a store or a run handed in by mistake is refused
    except ArtifactError as e:
        raise TrainDataError(f"{e} (needs pairs.parquet and manifest.json from `mllmrec pairs`)") from None
    if not path.is_file():
        raise TrainDataError(
            f"{d} is not a complete pairs directory: no pairs.parquet (run `mllmrec pairs` again)"
        )
    table = pq.read_table(path)
    missing = {"query_id", "partner_id", "score", "part"} - set(table.column_names)
    if missing:
        raise TrainDataError(f"{path} lacks columns {sorted(missing)}")
    cols = {
        c: np.asarray(table.column(c).to_pylist(), dtype=object if c != "score" else np.float64)
        for c in ("query_id", "partner_id", "score", "part")
    }
    return cols, {"path": str(path), "sha256": file_sha256(path), **manifest}


def load_pair_data(cfg: Any, template: Any, encoder: Encoder) -> PairData:
    """Join pairs to the catalogue, apply the bad-input rules, build the i2i protocols."""
    from mllmrec.catalog import load_catalog

    cols, pairs_manifest = read_pairs(cfg.pairs)
    catalog = load_catalog(cfg)
    items = {it.id: it for it in catalog.items}
    report: dict[str, Any] = {"catalog_rejected": [r.to_dict() for r in catalog.rejected]}
    used = set(cols["query_id"].tolist()) | set(cols["partner_id"].tolist())
    if not len(cols["score"]):
        raise TrainDataError(f"{cfg.pairs}: no pairs to train on")
    unknown = used - set(items)
    bad = _check_items(cfg, template, encoder, [items[i] for i in sorted(used - unknown)])
    text_only = {r["id"] for r in bad if r["action"] == "text-only"}
    unusable = unknown | {r["id"] for r in bad if r["action"] == "rejected"}
    ok = ~(np.isin(cols["query_id"], list(unusable)) | np.isin(cols["partner_id"], list(unusable)))
    report.update(
        unknown_items={"count": len(unknown), "examples": _examples(unknown)},
        rejected_items=[r for r in bad if r["action"] == "rejected"],
        text_only_items=[r for r in bad if r["action"] == "text-only"],
        pairs_dropped=int((~ok).sum()),
    )
    part = cols["part"]
    train_rows = ok & (part == "train")
    a, b = cols["query_id"][train_rows], cols["partner_id"][train_rows]
    lo, hi = np.where(a <= b, a, b), np.where(a <= b, b, a)
    uniq = sorted(set(zip(lo.tolist(), hi.tolist(), strict=True)))
    train = np.array(uniq, dtype=object).reshape(-1, 2)
    if len(train) < cfg.batch_pairs:
        raise TrainDataError(
            f"{len(train)} usable training pairs, fewer than one batch ({cfg.batch_pairs}); "
            f"{report['pairs_dropped']} pairs were dropped (see the report)"
        )
    protocols = {}
    for name in ("valid", "test"):
        rows = ok & (part == name)
        protocols[name] = i2i_protocol(
            cols["query_id"][rows],
            cols["partner_id"][rows],
            cols["score"][rows],
            cfg.max_valid_queries if name == "valid" else None,
            cfg.seed,
        )
    report.update(
        train_pairs=len(train),
        valid_queries=len(protocols["valid"].queries),
        valid_candidates=len(protocols["valid"].candidates),
        test_queries=len(protocols["test"].queries),
    )
    report["pairs_path"] = pairs_manifest["path"]  # a path may change on resume; the content hash may not
    fp = {"pairs": {"sha256": pairs_manifest["sha256"]}, "catalog_sha256": catalog.sha256}
    return PairData(items, train, protocols, text_only, report, fp)


def _check_items(cfg: Any, template: Any, encoder: Encoder, items: list[Item]) -> list[dict[str, str]]:
    """Decode each used item's images once and render it once; return rejection records."""
    from mllmrec.catalog import load_item_images
    from mllmrec.prompts import PromptError, render
    from mllmrec.types import Rejection

    base = Path(cfg.catalog).parent
    use_images = template.uses_images and cfg.image_field is not None

    def check(it: Item) -> dict[str, str] | None:
        n_img, rej = len(it.image_refs), None
        if use_images and it.image_refs:
            images, rej = load_item_images(it, base, cfg)
            n_img = len(images) if images is not None else 0
            for im in images or []:
                im.close()
            if images is None:
                return rej.to_dict()
        try:
            render(
                template,
                it,
                [None] * (n_img if use_images else 0),
                image_placeholder=encoder.image_placeholder,
                chat=encoder.render_chat,
                special_tokens=encoder.special_tokens,
            )
        except PromptError as e:
            return Rejection(it.id, str(e)).to_dict()
        return rej.to_dict() if rej is not None else None

    with ThreadPoolExecutor(max_workers=4) as pool:
        return [r for r in pool.map(check, items) if r is not None]


class BatchSource:
    """Step -> the batch of pairs (deterministic), and rendering with modality dropout."""

    def __init__(self, data: PairData, cfg: Any, template: Any, encoder: Encoder) -> None:
        self.data, self.cfg, self.template, self.encoder = data, cfg, template, encoder
        self.per_epoch = len(data.train) // cfg.batch_pairs
        self.base = Path(cfg.catalog).parent
        self.use_images = template.uses_images and cfg.image_field is not None
        self._pool = ThreadPoolExecutor(max_workers=4)

    def pairs(self, step: int) -> np.ndarray:
        """[B, 2] item ids of global batch `step` (0-based)."""
        epoch, k = divmod(step, self.per_epoch)
        perm = np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.data.train))
        return self.data.train[perm[k * self.cfg.batch_pairs : (k + 1) * self.cfg.batch_pairs]]

    def render(
        self, ids: list[str], step: int | None = None, rows: tuple[int, int] | None = None
    ) -> list[RenderedItem]:
        """Render items (images decoded now); with `step`, apply that step's modality dropout.

        `rows` = (offset, total): `ids` are rows offset.. of the step's `total` global rows (one
        process's share), so each global row gets the same draw whatever the number of processes."""
        from mllmrec.catalog import load_item_images
        from mllmrec.prompts import render

        drop = np.zeros(len(ids), dtype=np.int8)  # 0 keep, 1 drop image, 2 drop text
        if step is not None and self.cfg.modality_dropout > 0:
            offset, total = rows or (0, len(ids))
            rng = np.random.default_rng([self.cfg.seed, step, 1])
            hit = rng.random(total) < self.cfg.modality_dropout
            drop = np.where(hit, rng.integers(1, 3, total), 0)[offset : offset + len(ids)]
        todo = [self.data.items[i] for i in ids]

        def load(n_it: tuple[int, Item]) -> list[Any]:
            n, it = n_it
            if not self.use_images or it.id in self.data.text_only:
                return []
            if drop[n] == 1 and any(it.texts.values()):  # only items that keep some text may lose the image
                return []
            return load_item_images(it, self.base, self.cfg)[0] or []

        images = list(self._pool.map(load, enumerate(todo)))
        out = []
        for n, (it, ims) in enumerate(zip(todo, images, strict=True)):
            if drop[n] == 2 and ims:  # only items that keep an image may lose their text
                it = Item(it.id, {k: "" for k in it.texts}, it.image_refs)
            out.append(
                render(
                    self.template,
                    it,
                    ims,
                    image_placeholder=self.encoder.image_placeholder,
                    chat=self.encoder.render_chat,
                    special_tokens=self.encoder.special_tokens,
                )
            )
        return out
