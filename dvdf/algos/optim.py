"""Adam for every learner: torch's optimiser (fused where torch has it) for the stage-1/2 learners,
and, for the stage-3 step (:mod:`dvdf.algos.iql_step`, eager and compiled alike), the same update as
a function of tensors that can live inside one graph."""

from __future__ import annotations

from typing import Iterable, Union

import torch
from torch import Tensor

ADAM_BETAS = (0.9, 0.999)   # torch's defaults, used by every learner
ADAM_EPS = 1e-8


def make_adam(params: Union[Iterable[torch.nn.Parameter], Iterable[dict]], lr: float) -> torch.optim.Adam:
    """Adam with the fused single-kernel implementation where torch has one for the device
    (CPU since torch 2.4, CUDA), else the multi-tensor (foreach) one. Same update either way.

    ``params`` may be parameter groups (dicts); ``lr`` is the default of groups that set none.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


def init_adam_state(optimizer: torch.optim.Adam) -> None:
    """Create the per-parameter state (step, exp_avg, exp_avg_sq) that ``optimizer.step()`` would
    create lazily, in its layout (a float32 step on the parameter's device for fused Adam, a CPU one
    otherwise), so a function (:func:`adam_step_`) can update it in place from the first step on -
    and the optimiser's ``state_dict`` stays what torch writes. Used by the SAC learner."""
    for group in optimizer.param_groups:
        if group["weight_decay"] or group["amsgrad"] or group["maximize"]:
            raise ValueError("adam_step_ implements Adam without weight decay, amsgrad or maximize")
        step_device = None if group.get("fused") or group.get("capturable") else "cpu"
        for param in group["params"]:
            state = optimizer.state[param]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=step_device or param.device)
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)


def adam_step_(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
               lr: Union[float, Tensor], t: Tensor, bias_correction1: Tensor, bias_correction2_sqrt: Tensor,
               beta1: float = ADAM_BETAS[0], beta2: float = ADAM_BETAS[1], eps: float = ADAM_EPS) -> None:
    """One Adam update in place, torch.optim.Adam's formula without weight decay, at step ``t``
    (1 for the first):

        m = lerp(m, g, 1 - beta1);  v = beta2 v + (1 - beta2) g^2
        p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    ``t`` (0-dim float32), ``bias_correction1`` = 1 - beta1^t and ``bias_correction2_sqrt`` =
    sqrt(1 - beta2^t) (0-dim float64, :func:`adam_bias_corrections`) and ``lr`` (a float or a 0-dim
    float64 tensor) are tensors, so no step count or schedule is a Python constant of a compiled
    graph or a captured CUDA graph. Run eagerly, this is torch's own fused kernel (one call for all
    tensors; it reads ``t``); traced by ``torch.compile``, the same formula as foreach ops that
    inductor fuses, reading the bias corrections as values instead of recomputing pow(beta, t) for
    every element. Step size in float64 either way, as torch's fused kernel computes it.
    """
    if not torch.compiler.is_compiling() and params[0].device.type in _FUSED_DEVICES:
        torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], [t] * len(params), lr=lr, beta1=beta1,
                           beta2=beta2, weight_decay=0.0, eps=eps, amsgrad=False, maximize=False)
        return
    step_size = (lr / bias_correction1).to(params[0].dtype)
    bias2_sqrt = bias_correction2_sqrt.to(params[0].dtype)
    torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, bias2_sqrt)
    torch._foreach_add_(denom, eps)
    update = torch._foreach_div(exp_avgs, denom)
    torch._foreach_mul_(update, step_size)
    torch._foreach_sub_(params, update)


_FUSED_DEVICES = ("cpu", "cuda")   # where torch has a fused Adam kernel


def adam_bias_corrections(t: Tensor, beta1: float = ADAM_BETAS[0], beta2: float = ADAM_BETAS[1]
                          ) -> tuple[Tensor, Tensor]:
    """(1 - beta1^t, sqrt(1 - beta2^t)) in float64 for step number ``t`` (1 for the first step)."""
    t = t.to(torch.float64)
    return 1.0 - beta1 ** t, (1.0 - beta2 ** t).sqrt()
