"""``iql.compile: step`` - the stage-3 update and its batch gather as ONE static-shape function.

Given the row indices the samplers drew (the only work left outside: one ``randint`` per member
and buffer, on the device), one call gathers the source and target batches from the
device-resident buffers and runs the agent's update function (:class:`dvdf.algos.iql_step.IQLStep`,
the same one the eager path runs, with ``torch.func`` gradients) on the agent's state.

No value is read on the host and every shape is fixed by the config, so ``torch.compile`` makes it
one graph: on CPU inductor's C++ kernels (no Python between ops), on CUDA additionally captured as
a CUDA graph (``mode="reduce-overhead"``) and replayed with one launch per step instead of several
hundred small kernels. The CUDA-graph path has not yet run on a GPU (no session had one); the same
function is checked against the eager update on CPU, compiled and not (tests/test_whole_step.py).

The state is the agent's own (updated in place, loaded in place by ``load_state_dict``), so a
checkpoint is the same in every mode and a run resumes in any of them. :func:`make_train_step` is
the training step of the experiment loop (and the bench) in every mode.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from dvdf.algos.compile_mode import skip_guards_after_first_call
from dvdf.algos.filtered_iql import Batch, FilteredIQL

# Source columns the experiment's filter diagnostics read, returned with each step's info.
DIAGNOSTIC_KEYS = ("dyn_score", "advantage", "provenance")


class WholeStep:
    """The agent's update from sampled row indices, compiled (``compiled=False``: the same function
    run eagerly, for checks).

    Args:
        agent: the learner; its state is updated in place.
        source: the source buffer (None for iql-target); member columns if the agent has members.
        target: the target buffer.
        cuda_graphs: compile for CUDA-graph replay (static addresses for the state,
            ``mode="reduce-overhead"``); default: on CUDA devices. On CPU inductor skips the graph
            capture itself, so a CPU test runs every other line of the CUDA set-up.
    """

    def __init__(self, agent: FilteredIQL, source, target, compiled: bool = True,
                 cuda_graphs: Optional[bool] = None):
        if agent.filter.uses_source and source is None:
            raise ValueError(f"method {agent.filter.method!r} needs a source buffer")
        self.agent = agent
        self.source = source if agent.filter.uses_source else None
        self.target = target
        self.step_fn = agent.make_step(functional=True)
        self.device = agent.device
        self.cuda_graphs = compiled and (self.device.type == "cuda" if cuda_graphs is None else cuda_graphs)
        self._fn = self._update
        if self.cuda_graphs:
            # A CUDA graph reads its inputs at fixed addresses: an input not marked static is
            # copied into graph memory before every replay - for the buffers, the whole dataset.
            # The state is updated (and loaded) in place, so its addresses never change either.
            buffers = [b for b in (self.source, self.target) if b is not None]
            for tensor in (*(t for b in buffers for t in b.tensors()), *agent.state.tensors()):
                torch._dynamo.mark_static_address(tensor)
            self._fn = torch.compile(self._update, mode="reduce-overhead", dynamic=False)
        elif compiled:  # kernel calls from C++, not Python: per-op overhead is a visible share on CPU
            self._fn = torch.compile(self._update, dynamic=False, options={"cpp_wrapper": True})
        if compiled:
            # Nothing the guards check changes between steps - shapes are fixed by the config, the
            # state is updated and loaded in place - so they run on the first call (the compile) only.
            self._fn = skip_guards_after_first_call(self._fn)

    def __call__(self, source_index: Optional[Tensor], target_index: Tensor
                 ) -> tuple[dict[str, Tensor], Optional[Batch]]:
        """One update from ``(B,)`` row indices (``(K, B)`` with members): (info, the source batch's
        diagnostic columns, or None without source data). Both are valid until the next call."""
        agent = self.agent
        source_index = source_index if self.source is not None else None
        noise = agent.constraint_noise(None if source_index is None else source_index.shape[-1], target_index.shape)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        info, diagnostics = self._fn(source_index, target_index, noise)
        agent.step += 1
        return info, diagnostics

    def _update(self, source_index: Optional[Tensor], target_index: Tensor, noise: Optional[Tensor]):
        source = None if source_index is None else self.source.take(source_index)
        _, info = self.step_fn(self.agent.state, source, self.target.take(target_index), noise)
        diagnostics = None if source is None else {k: source[k] for k in DIAGNOSTIC_KEYS if k in source}
        return info, diagnostics


def make_train_step(agent: FilteredIQL, source, target, batch_size: int, samplers: list[torch.Generator]
                    ) -> Callable[[], tuple[dict[str, Tensor], Optional[Batch]]]:
    """The experiment loop's training step as a callable: draw every sampler's rows (source rows,
    then target rows; one sampler per member), then update - through :class:`WholeStep` when
    the agent's resolved mode (``agent.compile_mode``, "auto" already decided) is "step", else
    ``agent.update`` on the gathered batches. Both draw the same rows. It returns (info, the source
    batch or its diagnostic columns; None without source). ``agent.load_state_dict`` may come
    before or after (the state is loaded in place).
    """
    source = source if agent.filter.uses_source else None
    batched = agent.members is not None
    whole_step = WholeStep(agent, source, target) if agent.compile_mode == "step" else None

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
