"""A tiny random sentence-transformers model folder (BERT + pooling + normalise), built offline in
well under a second, for testing `mllmrec import` without the real all-MiniLM-L6-v2 weights."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = (
    "bag",
    "leather",
    "red",
    "blue",
    "cotton",
    "shirt",
    "classic",
    "cut",
    "roomy",
    "wool",
    "plain",
    "item",
)


def build_st_folder(out: str | Path, *, pooling: str = "mean", normalize: bool = True, seed: int = 0) -> Path:
    """Write a sentence-transformers layout: the transformer at the root, 1_Pooling/config.json,
    2_Normalize/ when `normalize`, modules.json naming them, sentence_bert_config.json."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(out / "vocab.txt"), do_lower_case=True).save_pretrained(out)
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=64,
    )
    BertModel(cfg).eval().save_pretrained(out)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
        (out / "2_Normalize").mkdir(exist_ok=True)
    (out / "modules.json").write_text(json.dumps(modules, indent=2), encoding="utf-8")
    (out / "1_Pooling").mkdir(exist_ok=True)
    modes = {
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (out / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 16, **modes}), encoding="utf-8"
    )
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32}), encoding="utf-8")
    return out
