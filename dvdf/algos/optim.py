"""Adam for every learner: construction (fused where torch has it) and, for the compiled whole step,
the same update as a function of tensors that can live inside one graph."""

from __future__ import annotations

from typing import Iterable, Union

import torch
from torch import Tensor


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
    otherwise), so a function can update it in place before the first eager step - and the
    optimiser's ``state_dict`` stays what the eager path writes."""
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
               steps: list[Tensor], lr: Tensor, beta1: float, beta2: float, eps: float) -> None:
    """One Adam update in place, torch.optim.Adam's formula (no weight decay):

        t += 1;  m = lerp(m, g, 1 - beta1);  v = beta2 v + (1 - beta2) g^2
        p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    ``lr`` is a tensor (float64, 0-dim) and t is read from ``steps``, so a schedule changes no
    Python constant of a compiled graph or a captured CUDA graph. Bias corrections in float64, as
    torch's fused kernel computes them.
    """
    torch._foreach_add_(steps, 1.0)
    t = steps[0].to(torch.float64)
    step_size = (lr / (1.0 - beta1 ** t)).to(params[0].dtype)
    bias2_sqrt = (1.0 - beta2 ** t).sqrt().to(params[0].dtype)
    torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, bias2_sqrt)
    torch._foreach_add_(denom, eps)
    update = torch._foreach_div(exp_avgs, denom)
    torch._foreach_mul_(update, step_size)
    torch._foreach_sub_(params, update)
