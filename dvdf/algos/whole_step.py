"""``iql.compile: step`` - the whole stage-3 update as ONE static-shape function.

Given the row indices the samplers drew (the only work left outside: one ``randint`` per member
and buffer, on the device), one call does what ``FilteredIQL.update`` does after sampling:

  gather the source and target batches from the device-resident buffers -> select and weight the
  source rows -> IQL losses (+ OTDF's constraint) -> their gradients (``torch.func``) -> Adam for
  every network (:func:`dvdf.algos.optim.adam_step_`, the learning rates as tensors) -> Polyak
  average of the target critic.

No value is read on the host and every shape is fixed by the config, so ``torch.compile`` makes it
one graph: on CPU inductor's C++ kernels (no Python between ops), on CUDA additionally captured as
a CUDA graph (``mode="reduce-overhead"``) and replayed with one launch per step instead of several
hundred small kernels. The CUDA-graph path has not yet run on a GPU (no session had one); the same
function is checked against the eager update on CPU, compiled and not.

It updates the agent's own tensors in place - parameters, the optimiser's step/exp_avg/exp_avg_sq,
the target critic - and steps the agent's scheduler, so a checkpoint is the eager path's and a run
resumes in either mode. Same math as the eager update, within float tolerance
(tests/test_whole_step.py). :func:`make_train_step` is the training step of the experiment loop
(and the bench) in either mode.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value

from dvdf.algos.filtered_iql import Batch, FilteredIQL
from dvdf.algos.iql import polyak_update
from dvdf.algos.optim import adam_step_, init_adam_state

# Source columns the experiment's filter diagnostics read, returned with each step's info.
DIAGNOSTIC_KEYS = ("dyn_score", "advantage", "provenance")


class _TrainedNetworks(nn.Module):
    """Q, V and the policy as one module, so ``functional_call`` can swap in all trained parameters
    at once and ``torch.func`` differentiates the agent's own losses with respect to them."""

    def __init__(self, agent: FilteredIQL):
        super().__init__()
        self.q, self.v, self.policy = agent.q, agent.v, agent.policy
        self.agent = agent

    def forward(self, source: Optional[Batch], target: Batch, noise: Optional[Tensor]):
        total, pred_action, obs, info = self.agent.selected_losses(source, target)
        if self.agent.behavior_vae is not None:
            total = total + self.agent.constraint_penalty(obs, pred_action, info, noise)
        return total, info


@dataclass
class _AdamGroup:
    """One optimiser parameter group, as the tensor lists :func:`adam_step_` updates."""
    names: list[str]
    params: list[Tensor]
    exp_avgs: list[Tensor]
    exp_avg_sqs: list[Tensor]
    steps: list[Tensor]
    lr: Tensor                 # float64, 0-dim; refilled from the scheduler before every step
    beta1: float
    beta2: float
    eps: float


class WholeStep:
    """The agent's update from sampled row indices, compiled (``compiled=False``: the same function
    run eagerly, for checks).

    Args:
        agent: the learner; its tensors are updated in place.
        source: the source buffer (None for iql-target); member columns if the agent has members.
        target: the target buffer.
        cuda_graphs: compile for CUDA-graph replay (static addresses for the optimiser state,
            ``mode="reduce-overhead"``); default: on CUDA devices. On CPU inductor skips the graph
            capture itself, so a CPU test runs every other line of the CUDA set-up.

    An optimiser state reloaded by ``agent.load_state_dict`` is rebound on the next call; with
    CUDA graphs its new addresses mean a new capture, so create the step after loading.
    """

    def __init__(self, agent: FilteredIQL, source, target, compiled: bool = True,
                 cuda_graphs: Optional[bool] = None):
        if agent.filter.uses_source and source is None:
            raise ValueError(f"method {agent.filter.method!r} needs a source buffer")
        self.agent = agent
        self.source = source if agent.filter.uses_source else None
        self.target = target
        self.networks = _TrainedNetworks(agent)
        self.device = agent.device
        self.cuda_graphs = compiled and (self.device.type == "cuda" if cuda_graphs is None else cuda_graphs)
        self.groups: list[_AdamGroup] = []
        self._bind_optimizer()
        self._fn = self._update
        if self.cuda_graphs:
            # A CUDA graph reads its inputs at fixed addresses: an input not marked static is
            # copied into graph memory before every replay - for the buffers, the whole dataset.
            # The networks are updated in place, so their addresses never change either.
            buffers = [b for b in (self.source, self.target) if b is not None]
            for tensor in (*(t for b in buffers for t in b.tensors()), *self.networks.parameters(),
                           *agent.q_target.parameters()):
                torch._dynamo.mark_static_address(tensor)
            self._fn = torch.compile(self._update, mode="reduce-overhead", dynamic=False)
        elif compiled:  # as FilteredIQL's "losses" mode: kernel calls from C++, not Python
            self._fn = torch.compile(self._update, dynamic=False, options={"cpp_wrapper": True})

    def _bind_optimizer(self) -> None:
        optimizer = self.agent.optimizer
        init_adam_state(optimizer)
        name_of = {id(p): name for name, p in self.networks.named_parameters()}
        self._bound_state = optimizer.state
        self.groups = []
        for group in optimizer.param_groups:
            params = group["params"]
            states = [optimizer.state[p] for p in params]
            lr = torch.zeros((), dtype=torch.float64, device=self.device)
            self.groups.append(_AdamGroup(
                names=[name_of[id(p)] for p in params], params=params,
                exp_avgs=[s["exp_avg"] for s in states], exp_avg_sqs=[s["exp_avg_sq"] for s in states],
                steps=[s["step"] for s in states], lr=lr, beta1=group["betas"][0], beta2=group["betas"][1],
                eps=group["eps"]))
        if self.cuda_graphs:
            # Tensors the graph mutates (or reads after an eager refill) must keep their address.
            for g in self.groups:
                for tensor in (*g.exp_avgs, *g.exp_avg_sqs, *g.steps, g.lr):
                    torch._dynamo.mark_static_address(tensor)

    def __call__(self, source_index: Optional[Tensor], target_index: Tensor
                 ) -> tuple[dict[str, Tensor], Optional[Batch]]:
        """One update from ``(B,)`` row indices (``(K, B)`` with members): (info, the source batch's
        diagnostic columns, or None without source data). Both are valid until the next call."""
        agent = self.agent
        if agent.optimizer.state is not self._bound_state:   # load_state_dict replaced it
            self._bind_optimizer()
        for group, bound in zip(agent.optimizer.param_groups, self.groups):
            bound.lr.fill_(group["lr"])
        noise = self._constraint_noise(source_index, target_index)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        info, diagnostics = self._fn(source_index if self.source is not None else None, target_index, noise)
        if agent.step == 0:
            with warnings.catch_warnings():
                # The update went through adam_step_, not optimizer.step(): torch's first-step check
                # of the call order (scheduler after optimiser) does not apply.
                warnings.filterwarnings("ignore", re.escape("Detected call of `lr_scheduler.step()`"), UserWarning)
                agent.scheduler.step()
        else:
            agent.scheduler.step()
        agent.step += 1
        return info, diagnostics

    def _constraint_noise(self, source_index: Optional[Tensor], target_index: Tensor) -> Optional[Tensor]:
        """OTDF's VAE latent noise for this step, drawn eagerly from the agent's noise generator
        (a generator cannot enter the graph) - the same draw the eager update makes."""
        vae = self.agent.behavior_vae
        if vae is None:
            return None
        rows = target_index.shape[-1]
        if self.source is not None:
            rows += self.agent.kept_count(source_index.shape[-1])
        shape = (*target_index.shape[:-1], rows, vae.latent_dim)
        return torch.randn(shape, generator=self.agent.noise_generator, device=self.device)

    def _update(self, source_index: Optional[Tensor], target_index: Tensor, noise: Optional[Tensor]):
        source = None if source_index is None else self.source.take(source_index)
        target = self.target.take(target_index)
        params = dict(self.networks.named_parameters())
        grads, (_, info) = grad_and_value(self._loss, has_aux=True)(params, source, target, noise)
        with torch.no_grad():
            for g in self.groups:
                adam_step_(g.params, [grads[name] for name in g.names], g.exp_avgs, g.exp_avg_sqs, g.steps,
                           g.lr, g.beta1, g.beta2, g.eps)
            polyak_update(self.agent.q_target.parameters(), self.agent.q.parameters(), self.agent.cfg.polyak)
        diagnostics = None if source is None else {k: source[k] for k in DIAGNOSTIC_KEYS if k in source}
        return info, diagnostics

    def _loss(self, params: dict[str, Tensor], source: Optional[Batch], target: Batch, noise: Optional[Tensor]):
        return functional_call(self.networks, params, (source, target, noise))


def make_train_step(agent: FilteredIQL, source, target, batch_size: int, samplers: list[torch.Generator]
                    ) -> Callable[[], tuple[dict[str, Tensor], Optional[Batch]]]:
    """The experiment loop's training step as a callable: draw every sampler's rows (source rows,
    then target rows; one sampler per member), then update - through :class:`WholeStep` when
    ``agent.cfg.compile`` is "step", else ``agent.update`` on the gathered batches. Both draw the
    same rows. It returns (info, the source batch or its diagnostic columns; None without source).

    Build it after any ``agent.load_state_dict`` (see :class:`WholeStep`).
    """
    source = source if agent.filter.uses_source else None
    batched = agent.members is not None
    whole_step = WholeStep(agent, source, target) if agent.cfg.compile == "step" else None

    def indices(buffer) -> Optional[Tensor]:
        if buffer is None:
            return None
        return buffer.member_indices(batch_size, samplers) if batched else buffer.sample_indices(batch_size,
                                                                                                  samplers[0])

    def train_step():
        source_index, target_index = indices(source), indices(target)
        if whole_step is not None:
            return whole_step(source_index, target_index)
        source_batch = None if source_index is None else source.take(source_index)
        return agent.update(source_batch, target.take(target_index)), source_batch

    return train_step
