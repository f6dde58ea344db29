"""Contrastive losses for the train stage: a registry picked by name (`--loss`, YAML), or objects
passed from Python (`run_train(cfg, loss=MyLoss())`, `Trainer(cfg, encoder, loss=...)`).

A loss takes tensors, not models: `loss(reps [n, d], partner [n], keys [n], log_scale [])` ->
scalar, where row i's positive is row `partner[i]`, `keys` are item ids (rows with the same key are
the same item, never used as negatives), and `log_scale` is the learnable log logit scale.
`objective` combines channels (mm/fused and the mICL visual channel, weighted) and Matryoshka
prefixes into one total plus named parts that the trainer logs. Adding a loss means one module
here and one line in `LOSSES`; the tests iterate the table. A loss object may carry a `name`
(recorded in the run's manifest and identity; default: its class name).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mllmrec.train.losses.infonce import InfoNCE

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

# name -> factory; "infonce" is NoteLLM-2's loss (every other item of the 2B is a negative),
# "infonce-cross" the CLIP-style variant (negatives only from the other side of the pairs).
LOSSES: dict[str, Callable[[], Loss]] = {
    "infonce": lambda: InfoNCE(negatives="all"),
    "infonce-cross": lambda: InfoNCE(negatives="cross"),
}


def get_loss(name_or_loss: str | Loss) -> Loss:
    """The loss registered under a name (a fresh object), or the object itself."""
    if not isinstance(name_or_loss, str):
        return name_or_loss
    try:
        return LOSSES[name_or_loss]()
    except KeyError:
        from mllmrec.config import ConfigError

        raise ConfigError(f"unknown loss {name_or_loss!r}; known: {', '.join(LOSSES)}") from None


def loss_name(loss: Loss) -> str:
    """How a loss object is named in manifests: its `name` attribute, else its class name."""
    return str(getattr(loss, "name", None) or type(loss).__name__)


def objective(
    channels: dict[str, torch.Tensor],
    partner: torch.Tensor,
    keys: torch.Tensor,
    log_scale: torch.Tensor,
    loss: Loss,
    weights: dict[str, float],
    matryoshka_dims: Sequence[int] = (),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """total = Σ_channel w_c · mean over dims m ∈ {full} ∪ matryoshka of loss(reps_c[:, :m]).

    Returns (total, parts) with parts named "mm", "visual", "mm@64" ... (unweighted)."""
    total = torch.zeros((), device=log_scale.device)
    parts: dict[str, torch.Tensor] = {}
    for ch, w in weights.items():
        reps = channels[ch]
        per_dim = [loss(reps, partner, keys, log_scale)]
        parts[ch] = per_dim[0]
        for m in matryoshka_dims:
            if m < reps.shape[1]:
                parts[f"{ch}@{m}"] = loss(reps[:, :m], partner, keys, log_scale)
                per_dim.append(parts[f"{ch}@{m}"])
        total = total + w * torch.stack(per_dim).mean()
    return total, parts


__all__ = ["LOSSES", "InfoNCE", "Loss", "get_loss", "loss_name", "objective"]
