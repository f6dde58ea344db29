"""The composed backbone: any causal LM + a vision encoder + a connector, NoteLLM-2's construction.

An image goes vision encoder -> patch features [P, dv] -> connector -> T tokens [T, dl], and those
T vectors replace the T `<image>` tokens the prompt holds for it (the placeholder is expanded to
`tokens_per_image` copies before tokenizing). The LM's decoder then reads the spliced sequence
and, as for every backbone, the item vector is the hidden state of the last prompt token.

`compose(cfg)` builds one from sources (a transformers LM directory or hub id, optionally a GGUF
file through transformers' `gguf_file=`, plus any transformers vision model) and writes a single
directory; `ComposedEncoder.load(dir)` reads it back:

    composed.json           format version, connector config, image token, sources, versions
    lm/                     LM (dense safetensors, also when the source was GGUF) + tokenizer
    vision/                 vision model + image processor (absent for a text-only model)
    connector.safetensors   connector weights (absent for a text-only model)
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mllmrec import __version__
from mllmrec.backbone.base import (
    BackboneError,
    EncoderBase,
    four_bit_config,
    resolve_device,
    resolve_dtype,
    special_strings,
)
from mllmrec.backbone.config import ComposeConfig, ModelSpec
from mllmrec.backbone.connector import build_connector
from mllmrec.backbone.families import COMPOSED_FORMAT, COMPOSED_META, family_for
from mllmrec.backbone.pooling import expand_placeholders, gather_channels, tokenize_with_slots
from mllmrec.fusion.projection import apply_heads
from mllmrec.types import RenderedItem

FORMAT, FORMAT_VERSION = COMPOSED_FORMAT, 1
FAMILY = family_for(FORMAT)
IMAGE_TOKEN = FAMILY.image_pad
META_FILE = COMPOSED_META
LM_SUBDIR = FAMILY.tokenizer_subdir  # "lm": the LM and its tokenizer (with `<image>`) live here
CONNECTOR_FILE = "connector.safetensors"


def is_composed_dir(path: str | os.PathLike[str]) -> bool:
    """True when `path` is a directory written by `compose`."""
    return (Path(path) / META_FILE).is_file()


class ComposedEncoder(EncoderBase):
    """Encoder protocol over a composed MLLM. `accepts_images` is False for a text-only model (no
    vision encoder): it still has the `<image>` placeholder, but `encode` refuses items with images."""

    family = FAMILY
    image_placeholder = FAMILY.image_placeholder

    def __init__(
        self,
        name: str,
        lm: Any,
        tokenizer: Any,
        vision: nn.Module | None,
        image_processor: Any,
        connector: nn.Module | None,
        meta: dict[str, Any],
    ) -> None:
        self.name, self.lm, self.tokenizer, self.meta = name, lm.eval(), tokenizer, meta
        self.vision, self.image_processor = (vision.eval() if vision is not None else None), image_processor
        self.connector = connector.eval() if connector is not None else None
        self.accepts_images = vision is not None
        self.special_tokens = special_strings(tokenizer)
        # The late-fusion gate needs pooled vision features, which this encoder does not give yet
        # (the family row says so); embed and train refuse a gate on a composed model.
        self.fusion_gate: Any = None
        self.projection: Any = None  # projection head of a trained run
        self.hidden_size = int(lm.config.get_text_config().hidden_size)
        self.image_token_id = int(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
        self.tokens_per_image = int(meta.get("tokens_per_image") or 0)
        self.device = next(lm.parameters()).device
        self.dtype = next(lm.parameters()).dtype

    @property
    def network(self) -> Any:
        """The module the train stage wraps with LoRA (the causal LM; the vision tower has its own)."""
        return self.lm

    def networks(self) -> dict[str, nn.Module]:
        return {
            k: m
            for k, m in (("lm", self.lm), ("vision", self.vision), ("connector", self.connector))
            if m is not None
        }

    def _hashed_weights(self) -> nn.Module:
        return nn.ModuleDict(self.networks())

    @classmethod
    def open(cls, spec: ModelSpec, device: str | None, *, load_in_4bit: bool = False) -> ComposedEncoder:
        """Load the composed directory a ModelSpec names (the family table's entry point)."""
        return cls.load(
            spec.model,
            device=device,
            dtype=spec.dtype,
            trust_remote_code=spec.trust_remote_code,
            load_in_4bit=load_in_4bit,
        )

    @classmethod
    def from_sources(cls, cfg: ComposeConfig) -> ComposedEncoder:
        """Load LM, tokenizer and vision model from `cfg`'s sources and build a seeded connector."""
        from PIL import Image
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        _refuse_non_empty(Path(cfg.out))
        remote = cfg.trust_remote_code
        tokenizer = AutoTokenizer.from_pretrained(cfg.lm, gguf_file=cfg.gguf_file, trust_remote_code=remote)
        if IMAGE_TOKEN not in tokenizer.get_vocab():
            tokenizer.add_special_tokens(
                {"additional_special_tokens": [IMAGE_TOKEN]}, replace_extra_special_tokens=False
            )
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        lm = _load_lm(cfg)
        vision = processor = connector = None
        meta: dict[str, Any] = {"connector": None, "patches_per_image": None, "tokens_per_image": None}
        if cfg.vision is not None:
            vision = _standalone_vision(AutoModel.from_pretrained(cfg.vision, trust_remote_code=remote))
            processor = AutoImageProcessor.from_pretrained(cfg.vision, trust_remote_code=remote)
            with torch.no_grad():
                probe = _vision_patches(vision, processor, [Image.new("RGB", (224, 224))])  # [1, P, dv]
            options = (
                {"n_query": cfg.query_tokens, "n_layers": cfg.qformer_layers}
                if cfg.connector == "qformer"
                else {}
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                connector = build_connector(
                    cfg.connector, probe.shape[-1], lm.get_input_embeddings().embedding_dim, **options
                )
            meta.update(
                connector=connector.config(),
                patches_per_image=probe.shape[1],
                tokens_per_image=connector.tokens_per_image(probe.shape[1]),
            )
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "mllmrec_version": __version__,
            "image_token": IMAGE_TOKEN,
            **meta,
            "sources": {"lm": cfg.lm, "gguf_file": cfg.gguf_file, "vision": cfg.vision, "seed": cfg.seed},
        }
        return cls(cfg.out, lm, tokenizer, vision, processor, connector, meta)

    def save(self, out: str | os.PathLike[str]) -> Path:
        """Write the one-directory format; refuses a non-empty `out`, never leaves a half-written one."""
        from safetensors.torch import save_file

        out = Path(out)
        _refuse_non_empty(out)
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            self.lm.save_pretrained(tmp / LM_SUBDIR)
            self.tokenizer.save_pretrained(tmp / LM_SUBDIR)
            if self.vision is not None:
                self.vision.save_pretrained(tmp / "vision")
                self.image_processor.save_pretrained(tmp / "vision")
                state = {k: v.detach().contiguous().cpu() for k, v in self.connector.state_dict().items()}
                save_file(state, str(tmp / CONNECTOR_FILE))
            meta = json.dumps(self.meta, indent=2, sort_keys=True) + "\n"
            (tmp / META_FILE).write_text(meta, encoding="utf-8")
            if out.exists():
                out.rmdir()
            os.replace(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        device: str | None = "auto",
        dtype: str | None = "auto",
        trust_remote_code: bool = False,
        load_in_4bit: bool = False,
    ) -> ComposedEncoder:
        """Read a directory written by `compose`, on `device` in `dtype` (auto: bf16 on GPU, fp32 on CPU)."""
        from safetensors.torch import load_file
        from transformers import AutoImageProcessor, AutoModel, AutoModelForCausalLM, AutoTokenizer

        root = Path(path)
        if not is_composed_dir(root):
            raise FileNotFoundError(f"{root} is not a composed model directory (no {META_FILE})")
        meta = json.loads((root / META_FILE).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise BackboneError(
                f"{root}: composed format {meta.get('format')} v{meta.get('format_version')} is "
                f"not the {FORMAT} v{FORMAT_VERSION} this mllmrec reads"
            )
        device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, device)
        tokenizer = AutoTokenizer.from_pretrained(root / LM_SUBDIR, trust_remote_code=trust_remote_code)
        tokenizer.padding_side = "left"
        if load_in_4bit:  # QLoRA: the LM in NF4, vision tower and connector in full precision
            lm = AutoModelForCausalLM.from_pretrained(
                root / LM_SUBDIR,
                dtype=torch_dtype,
                trust_remote_code=trust_remote_code,
                quantization_config=four_bit_config(torch_dtype, list(FAMILY.quant_skip)),
                device_map={"": device},
            )
        else:
            lm = AutoModelForCausalLM.from_pretrained(
                root / LM_SUBDIR, dtype=torch_dtype, trust_remote_code=trust_remote_code
            ).to(device)
        vision = processor = connector = None
        if meta.get("connector"):
            vision = AutoModel.from_pretrained(
                root / "vision", dtype=torch_dtype, trust_remote_code=trust_remote_code
            ).to(device)
            processor = AutoImageProcessor.from_pretrained(
                root / "vision", trust_remote_code=trust_remote_code
            )
            connector = build_connector(**meta["connector"])
            connector.load_state_dict(load_file(str(root / CONNECTOR_FILE)))
            connector.to(device=device, dtype=torch_dtype)
        return cls(str(path), lm, tokenizer, vision, processor, connector, meta)

    def fingerprint(self) -> dict[str, Any]:
        """Backbone id, the composition's sources and connector, and a hash over all three parts."""
        return {
            "backbone": self.name,
            "revision": None,
            "kind": "composed",
            "dtype": str(self.dtype).removeprefix("torch."),
            "weights_fingerprint": self.weights_hash(),
            "sources": self.meta["sources"],
            "connector": self.meta["connector"],
        }

    def estimate_tokens(self, text_chars: int, image_sizes: Sequence[tuple[int, int]]) -> int:
        """~3 characters per text token; every image is spliced as `tokens_per_image` tokens."""
        return text_chars // 3 + len(image_sizes) * self.tokens_per_image

    def tokenize(
        self, batch: Sequence[RenderedItem]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Expand each `<image>` to `tokens_per_image` copies and tokenize left-padded (with slots)."""
        if not self.accepts_images and any(it.images for it in batch):
            bad = next(it.item_id for it in batch if it.images)
            raise BackboneError(
                f"item {bad!r} has images, but this composed model is text-only (no vision "
                "encoder); render such items without images"
            )
        texts, slots = zip(
            *(
                expand_placeholders(it.text, IMAGE_TOKEN, [self.tokens_per_image] * len(it.images), it.slots)
                for it in batch
            ),
            strict=True,
        )
        return tokenize_with_slots(self.tokenizer, texts, slots)

    def image_tokens(self, images: Sequence[Any]) -> torch.Tensor:
        """PIL images -> connector outputs [n_img, T, dl] in the LM's dtype."""
        patches = _vision_patches(self.vision, self.image_processor, images)  # [n_img, P, dv]
        if patches.shape[1] != self.meta["patches_per_image"]:
            raise ValueError(
                f"vision encoder gave {patches.shape[1]} patches per image, expected "
                f"{self.meta['patches_per_image']} (fixed when the model was composed)"
            )
        conn_dtype = next(self.connector.parameters()).dtype  # fp32 while the train stage tunes it
        return self.connector(patches.to(conn_dtype)).to(self.dtype)  # [n_img, T, dl]

    def hidden_states(self, batch: Sequence[RenderedItem]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Last-layer hidden states [n, L, d] (left padded) and slot indices; differentiable.

        Positions come from the mask, p_t = max(0, Σ_{s≤t} m_s − 1), so a left-padded row gets
        the same positions as the unpadded prompt (transformers does not derive them itself).
        """
        enc, slot_idx = self.tokenize(batch)
        ids = enc["input_ids"].to(self.device)  # [n, L]
        mask = enc["attention_mask"].to(self.device)  # [n, L]
        is_image = ids == self.image_token_id  # [n, L]
        embed = self.lm.get_input_embeddings()
        # `<image>` may lie beyond the embedding matrix: look up id 0 there, overwritten below.
        embeds = embed(ids.masked_fill(is_image, 0))  # [n, L, dl]
        images = [im for it in batch for im in it.images]
        if images:
            tokens = self.image_tokens(images)  # [n_img, T, dl]
            if int(is_image.sum()) != tokens.shape[0] * tokens.shape[1]:
                raise ValueError(
                    f"prompt holds {int(is_image.sum())} {IMAGE_TOKEN} tokens for "
                    f"{tokens.shape[0]} images of {tokens.shape[1]} tokens each"
                )
            embeds = embeds.masked_scatter(is_image.unsqueeze(-1), tokens.to(embeds.dtype))  # [n, L, dl]
        elif bool(is_image.any()):
            raise ValueError(f"prompt holds {IMAGE_TOKEN} tokens but the item has no images")
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # [n, L]
        # The decoder without the LM head (no [n, L, vocab] logits); also sees through peft.
        out = self.lm.get_decoder()(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False
        )
        return out.last_hidden_state, slot_idx  # [n, L, d]

    def prepare(self, batch: Sequence[RenderedItem]) -> list[RenderedItem]:
        """Nothing to do ahead of the forward (tokenizing happens inside it); kept for the protocol."""
        return list(batch)

    def features(self, prepared: Sequence[RenderedItem]) -> dict[str, torch.Tensor]:
        """{channel: [n, d]} on the model's device, with autograd (the train stage's forward)."""
        hidden, slot_idx = self.hidden_states(prepared)
        return apply_heads(gather_channels(hidden, slot_idx), None, self.projection, None)


def compose(cfg: ComposeConfig) -> Path:
    """Build a composed MLLM from `cfg`'s sources and save it as one directory (`cfg.out`)."""
    return ComposedEncoder.from_sources(cfg).save(cfg.out)


def run_compose(cfg: ComposeConfig, command: list[str] | None = None) -> int:
    """`mllmrec compose`: build and save, then say what was written."""
    enc = ComposedEncoder.from_sources(cfg)
    out, conn = enc.save(cfg.out), enc.meta["connector"]
    lm = cfg.lm + (f" ({cfg.gguf_file}, dequantized)" if cfg.gguf_file else "")
    what = (
        f"vision {cfg.vision} -> {conn['kind']} connector, {enc.tokens_per_image} tokens per image"
        if conn
        else "text-only (no vision encoder)"
    )
    print(f"composed: {out}  LM {lm}, hidden {enc.hidden_size}; {what}")
    return 0


def _refuse_non_empty(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new directory for the composed model")


def _load_lm(cfg: ComposeConfig) -> Any:
    """The causal LM, as a plain dense model even when it comes from a GGUF file.

    transformers marks a GGUF-loaded model quantized and refuses `save_pretrained` on it, so we
    dequantize on load and copy the weights into a fresh (uninitialised) model of its class."""
    from transformers import AutoModelForCausalLM, GgufConfig
    from transformers.initialization import no_init_weights  # transformers >= 5

    if cfg.gguf_file is None:
        return AutoModelForCausalLM.from_pretrained(cfg.lm, trust_remote_code=cfg.trust_remote_code)
    packed = AutoModelForCausalLM.from_pretrained(
        cfg.lm, gguf_file=cfg.gguf_file, quantization_config=GgufConfig(dequantize=True)
    )
    config = copy.deepcopy(packed.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with no_init_weights():
        dense = type(packed)(config).to(packed.dtype)
    dense.tie_weights()  # skipped when weights are not initialised; else lm_head is saved twice
    dense.load_state_dict(packed.state_dict())
    return dense.eval()


def _standalone_vision(model: nn.Module) -> nn.Module:
    """A vision-only model: the tower of a dual model (CLIPModel, SiglipModel), else `model` itself.
    A tower without `save_pretrained` (older transformers) is copied into its stand-alone class."""
    from transformers import AutoModel

    vision_config = getattr(model.config, "vision_config", None)
    tower = getattr(model, "vision_model", None)
    if vision_config is None or tower is None:
        return model
    if hasattr(tower, "save_pretrained"):
        return tower
    standalone = AutoModel.from_config(vision_config).to(next(model.parameters()).dtype)
    target = getattr(standalone, "vision_model", standalone)
    target.load_state_dict(tower.state_dict())
    return standalone


def _vision_patches(vision: nn.Module, processor: Any, images: Sequence[Any]) -> torch.Tensor:
    """PIL images -> the vision model's last hidden state [n_img, P, dv]."""
    param = next(vision.parameters())
    rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
    pixels = processor(images=rgb, return_tensors="pt")["pixel_values"]  # [n_img, 3, H, W]
    return vision(pixel_values=pixels.to(param.device, param.dtype)).last_hidden_state  # [n_img, P, dv]
