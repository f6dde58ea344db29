"""One optimisation step's gradients: plain or with gradient caching (GradCache), one or many processes.

In-batch contrastive losses couple every item of the batch, so the batch cannot simply be split
into micro-batches. GradCache (Gao et al., 2021) splits the work instead:

1. encode every chunk without autograd -> representations r (cheap in memory);
2. compute the loss on r (gathered from all processes) and its gradient g = ∂L/∂r;
3. re-encode each chunk with autograd and back-propagate the surrogate Σ r_chunk · g_chunk,
   which has the same parameter gradient as the full batch, one chunk's activations at a time.

The RNG state is replayed in step 3 so dropout masks match step 1. Without caching, step 1 keeps
the graph and step 3 is skipped. Across processes, other processes' representations arrive
detached (all_gather) and only the local rows carry gradient; every process computes the same
global loss, so summing the encoder gradients over processes (all_reduce) gives the full-batch
gradient, while the logit scale's gradient (already global on every process) is averaged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

Reps = dict[str, torch.Tensor]


def _rng_state() -> tuple[torch.Tensor, list[torch.Tensor]]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[torch.Tensor, list[torch.Tensor]]) -> None:
    torch.set_rng_state(state[0])
    if state[1]:
        torch.cuda.set_rng_state_all(state[1])


def gather_rows(local: Reps, world: int, rank: int) -> Reps:
    """Concatenate every process's rows (process order); only the local rows keep autograd."""
    if world == 1:
        return local
    import torch.distributed as dist

    out = {}
    for ch, x in local.items():
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.detach().contiguous())
        parts[rank] = x
        out[ch] = torch.cat(parts)
    return out


def reduce_gradients(
    encoder_params: Sequence[torch.nn.Parameter], global_params: Sequence[torch.nn.Parameter], world: int
) -> None:
    """Sum encoder gradients over processes; average the gradients of global-loss parameters."""
    if world == 1:
        return
    import torch.distributed as dist

    for p in encoder_params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
    for p in global_params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world


def backward_step(
    encode: Callable[[Any], Reps],
    chunks: Sequence[Any],
    loss_fn: Callable[[Reps], tuple[torch.Tensor, dict]],
    *,
    cache: bool,
    world: int = 1,
    rank: int = 0,
) -> tuple[torch.Tensor, dict]:
    """Accumulate the batch's gradients into the parameters (call `zero_grad` before).

    encode(chunk) -> {channel: [n_chunk, d]}; loss_fn(gathered reps) -> (loss, parts). The local
    rows are the chunks concatenated in order. Returns the (detached) loss and parts.
    """
    if not cache:
        reps = [encode(c) for c in chunks]
        local = {ch: torch.cat([r[ch] for r in reps]) for ch in reps[0]}
        loss, parts = loss_fn(gather_rows(local, world, rank))
        loss.backward()
        return loss.detach(), {k: v.detach() for k, v in parts.items()}

    states, reps = [], []
    with torch.no_grad():
        for c in chunks:
            states.append(_rng_state())
            reps.append(encode(c))
    local = {ch: torch.cat([r[ch] for r in reps]).detach().requires_grad_(True) for ch in reps[0]}
    loss, parts = loss_fn(gather_rows(local, world, rank))
    loss.backward()  # -> local[ch].grad = ∂L/∂r, and the loss-side parameters' gradients
    after = _rng_state()
    start = 0
    for c, state in zip(chunks, states, strict=True):
        _set_rng_state(state)
        out = encode(c)
        n = next(iter(out.values())).shape[0]
        grads = {ch: g[start : start + n] for ch in out if (g := local[ch].grad) is not None}
        surrogate = sum((out[ch] * g.to(out[ch].dtype)).sum() for ch, g in grads.items())
        surrogate.backward()
        start += n
    _set_rng_state(after)
    return loss.detach(), {k: v.detach() for k, v in parts.items()}
