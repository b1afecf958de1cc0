"""Optimiser construction shared by every learner."""

from __future__ import annotations

from typing import Iterable, Union

import torch


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
