"""`mllmrec export` config: flat flags (one CLI), each format's options routed to its exporter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mllmrec.config import REQUIRED, Checked, opt
from mllmrec.features.exporters import FORMATS, check_options, formats_help


@dataclass(frozen=True, kw_only=True)
class ExportConfig(Checked):
    """Write item vectors (from an embedding store or a distill run) in another framework's layout,
    with rows aligned to that framework's item ids: MMRec image_feat.npy/text_feat.npy, a RecBole
    pretrained-embedding atomic file, Cornac-ready .npy + ids, or plain npy / parquet."""

    source: str = opt(
        REQUIRED,
        "Embedding store (`mllmrec embed`) or distill run (`mllmrec distill`) directory.",
        positional=True,
    )
    format: Literal[FORMATS] = opt(REQUIRED, formats_help())  # choices: the exporters registry
    out: str = opt(REQUIRED, "Output directory (for mmrec: the MMRec dataset folder, data/<dataset>/).")
    channel: str | None = opt(
        None,
        "Channel to export (not mmrec): mm, visual, text, fused, or student for a distill run; "
        "default: mm for a store, student for a distill run.",
    )
    ids: str | None = opt(
        None,
        "Id list or id-map file fixing the row order (row i = its i-th id): .txt (one id per line), "
        ".json, or .csv/.tsv/.parquet with an id column and a row column such as MMRec's i_id_mapping.csv "
        "(asin, itemID). For mmrec with an MMRec .inter: maps MMRec itemID -> raw id.",
    )
    id_column: str | None = opt(
        None,
        "Column of --ids holding the raw item id when the map has several besides the row column (MMRec's "
        "orig_item_id,itemID,raw_item_id); default: the column whose values the source knows.",
    )
    interactions: str | None = opt(
        None,
        "Interaction log. mmrec: the dataset's MMRec .inter file (userID, itemID, x_label; n_items = "
        "max itemID + 1), or any other log (csv/tsv/parquet/jsonl with raw ids), which is remapped to "
        "MMRec ids 0..n-1 and written as <dataset>.inter with id-mapping files beside it. Other formats: "
        "every item of the log gets a row (RecBole would silently zero items without one).",
    )
    user_field: str = opt(
        "user_id", "Column of --interactions holding the user id (MMRec's userID is found too)."
    )
    item_field: str = opt(
        "item_id", "Column of --interactions holding the item id (MMRec's itemID is found too)."
    )
    missing: Literal["error", "zero", "mean", "new-item"] = opt(
        "error",
        "Items the source has no vector for: stop with an error naming them, or fill with zeros, "
        "the channel mean, or (distill runs) the learned new-item mapping; counts go into the manifest.",
    )
    nonfinite: Literal["error", "zero", "mean"] = opt(
        "error",
        "Vectors holding NaN or inf in the source: stop with an error naming the items, or write zeros / "
        "the channel's finite mean in their place; the filled ids go into the manifest. Never written as NaN.",
    )
    image_channel: str = opt("visual", "mmrec: channel written to image_feat.npy ('none': no image file).")
    text_channel: str = opt("mm", "mmrec: channel written to text_feat.npy ('none': no text file).")
    single_channel: Literal["auto", "both", "image", "text"] = opt(
        "auto",
        "mmrec: when the source has only one of --image-channel/--text-channel: auto writes the one "
        "file its content says (text_feat.npy for a text-only prompt or a model without vision, "
        "image_feat.npy for an image-only prompt, else the file whose --*-channel named it); both "
        "writes it into both files (MMRec then treats one vector as image and text); image / text "
        "write only that file.",
    )
    stale_caches: Literal["delete", "warn"] = opt(
        "delete",
        "mmrec: graph caches that MMRec models build from the features and keep in the dataset "
        "folder (*_adj_*.pt) would silently reuse the old features: delete them, or only warn.",
    )
    dataset: str | None = opt(
        None, "Dataset name for <dataset>.inter / <dataset>.itememb (default: the --out folder name)."
    )
    seed: int = opt(
        0,
        "mmrec with a raw log: seed of the MMRec 8:1:1 per-user split written as x_label "
        "(a log with its own x_label column keeps it).",
    )
    recbole_id_field: str = opt(
        "iid",
        "recbole: id column of the embedding file (must differ from the item "
        "id field of your .inter; list it in alias_of_item_id).",
    )
    recbole_emb_field: str = opt("item_emb", "recbole: embedding column of the file (float_seq).")
    store: str | None = opt(
        None,
        "Distill runs: embedding store for the new-item mapping and non-student "
        "channels (default: the store the run was trained from).",
    )
    overwrite: bool = opt(False, "Replace output files that already exist.")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_options(self)  # a format's own option set for another format is an error, not ignored
