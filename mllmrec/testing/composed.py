"""Tiny composed MLLMs for tests and the demo, built offline in well under a second.

- `build_tiny_sources`: a random causal LM (Qwen2, hidden 64, 2 layers) with the offline BPE
  tokenizer, and a random CLIP or SigLIP vision tower (hidden 32, 2 layers, 32 px images, patch 8,
  so 16 patches; CLIP adds a class token) with its PIL image processor, each in its own directory.
- `build_tiny_composed` / `cached_tiny_composed`: those sources composed into one directory.
- `write_tiny_gguf`: a random Llama written as a float32 GGUF file (llama.cpp tensor names,
  byte-level BPE tokenizer metadata), so the `gguf_file=` path is tested without a download.

Everything is deterministic in `seed`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import torch

from mllmrec.testing.cache import cached_build
from mllmrec.testing.qwen import TinyModelError
from mllmrec.testing.tokenizer import COMPOSED_IMAGE_TOKEN, build_tokenizer

VisionKind = Literal["clip", "siglip"] | None
TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-6,
}
TINY_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 8,
}
# Bump when the tiny models change, so stale cached builds are not reused.
# 2: cached builds carry mllmrec.testing.cache's completion marker instead of relying on composed.json.
CACHE_VERSION = 2


def tiny_lm(tokenizer: Any, arch: Literal["qwen2", "llama"] = "qwen2", seed: int = 0) -> Any:
    """A random causal LM sized `TINY`, its vocabulary and special ids matching `tokenizer`."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    config_cls, model_cls = {
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
        "llama": (LlamaConfig, LlamaForCausalLM),
    }[arch]
    config = config_cls(
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        **TINY,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_cls(config).eval()


def tiny_vision(kind: Literal["clip", "siglip"], seed: int = 0) -> tuple[Any, Any]:
    """A random CLIP/SigLIP vision tower sized `TINY_VISION` and its PIL image processor."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    side = TINY_VISION["image_size"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "clip":
            model = CLIPVisionModel(CLIPVisionConfig(**TINY_VISION))
            processor = CLIPImageProcessorPil(
                size={"shortest_edge": side}, crop_size={"height": side, "width": side}
            )
        elif kind == "siglip":
            model = SiglipVisionModel(SiglipVisionConfig(**TINY_VISION))
            processor = SiglipImageProcessorPil(size={"height": side, "width": side})
        else:
            raise TinyModelError(f"unknown tiny vision kind {kind!r}; known: clip, siglip")
    return model.eval(), processor


def build_tiny_sources(
    work_dir: str | os.PathLike[str], *, vision: VisionKind = "clip", seed: int = 0
) -> tuple[Path, Path | None]:
    """Write a tiny LM (+ tokenizer with `<image>`) to work_dir/lm and a vision tower to work_dir/vision."""
    work = Path(work_dir)
    tokenizer = build_tokenizer(extra_special_tokens=(COMPOSED_IMAGE_TOKEN,))
    tiny_lm(tokenizer, "qwen2", seed).save_pretrained(work / "lm")
    tokenizer.save_pretrained(work / "lm")
    if vision is None:
        return work / "lm", None
    model, processor = tiny_vision(vision, seed + 1)
    model.save_pretrained(work / "vision")
    processor.save_pretrained(work / "vision")
    return work / "lm", work / "vision"


def build_tiny_composed(
    out_dir: str | os.PathLike[str],
    *,
    connector: Literal["mlp", "qformer"] = "mlp",
    vision: VisionKind = "clip",
    seed: int = 0,
    query_tokens: int = 4,
) -> Path:
    """Compose tiny random sources into `out_dir` (must not exist or be empty); returns `out_dir`."""
    from mllmrec.backbone.composed import compose
    from mllmrec.backbone.config import ComposeConfig

    with tempfile.TemporaryDirectory(prefix="mllmrec-tiny-sources-") as work:
        lm_dir, vision_dir = build_tiny_sources(work, vision=vision, seed=seed)
        cfg = ComposeConfig(
            lm=str(lm_dir),
            vision=None if vision_dir is None else str(vision_dir),
            connector=connector,
            query_tokens=query_tokens,
            out=str(out_dir),
            seed=seed,
        )
        return compose(cfg)


def cached_tiny_composed(
    cache_dir: str | os.PathLike[str],
    *,
    connector: Literal["mlp", "qformer"] = "mlp",
    vision: VisionKind = "clip",
    seed: int = 0,
    query_tokens: int = 4,
) -> Path:
    """`build_tiny_composed` into cache_dir/<key>, built once by `mllmrec.testing.cache.cached_build`
    (concurrent builders race safely: the first rename wins, the others discard their copy)."""
    final = (
        Path(cache_dir)
        / f"tiny-composed-v{CACHE_VERSION}-{connector}-{vision or 'text'}-q{query_tokens}-s{seed}"
    )
    return cached_build(
        final,
        lambda tmp: build_tiny_composed(
            tmp, connector=connector, vision=vision, seed=seed, query_tokens=query_tokens
        ),
    )


def write_tiny_gguf(
    directory: str | os.PathLike[str], *, seed: int = 0, name: str = "tiny-llama-f32.gguf"
) -> str:
    """Write a random tiny Llama (`tiny_lm(..., "llama", seed)`) as a float32 GGUF; return its file name.

    The file follows llama.cpp's conventions, which transformers' GGUF loader undoes:
    - tensor names from gguf-py's own HF -> GGUF name map (`blk.N.attn_q.weight` ...);
    - q/k rows permuted from HF's rotate-half RoPE layout to llama.cpp's interleaved one:
      W.reshape(h, 2, d/2, ·).swapaxes(1, 2) per head;
    - the tokenizer as `gpt2` (byte-level BPE) metadata: token list, types (3 = control for
      specials), merges, eos/pad ids, chat template, pre-tokenizer `qwen2` (our split regex).
    The vocabulary has no `<image>` token, so composing it also tests a placeholder id that lies
    beyond the LM's embedding matrix.
    """
    import gguf

    tokenizer = build_tokenizer()
    model = tiny_lm(tokenizer, "llama", seed)
    config = model.config
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_name("mllmrec-tiny-llama")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_vocab_size(config.vocab_size)

    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    tokens = [by_id[i] for i in range(len(tokenizer))]
    specials = {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in specials else 1 for t in tokens])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)
    writer.add_chat_template(tokenizer.chat_template)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    heads = {"attn_q": config.num_attention_heads, "attn_k": config.num_key_value_heads}
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight":  # tied to token_embd; llama.cpp writes no `output` then
            continue
        module, suffix = hf_name.rsplit(".", 1)
        gguf_name = names.get_name(module)
        array = tensor.detach().float().numpy()  # [out, in] or [d]
        n_head = heads.get(gguf_name.rsplit(".", 1)[-1])
        if n_head is not None:
            array = (
                array.reshape(n_head, 2, array.shape[0] // n_head // 2, -1)
                .swapaxes(1, 2)
                .reshape(array.shape)
            )
        writer.add_tensor(f"{gguf_name}.{suffix}", array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return name
