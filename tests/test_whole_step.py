"""iql.compile: step - the whole update as one function: same math as the eager update, its Adam
equals torch's, checkpoints are interchangeable with the eager path's."""

from __future__ import annotations

import copy

import pytest
import torch

from dvdf.algos.filtered_iql import FilteredIQL
from dvdf.algos.optim import adam_bias_corrections, adam_step_, make_adam
from dvdf.algos.whole_step import WholeStep
from dvdf.config import FilterConfig, IQLConfig
from dvdf.data import TransitionBuffer
from dvdf.nets import BehaviorVAE, seeded_generators

OBS, ACT, B, POOL = 5, 2, 32, 300
IQL = IQLConfig(hidden=32, steps=50)


def pool(gen: torch.Generator, source: bool, members=None) -> TransitionBuffer:
    columns = {"observations": torch.randn(POOL, OBS, generator=gen),
               "actions": torch.rand(POOL, ACT, generator=gen) * 2 - 1,
               "rewards": torch.randn(POOL, generator=gen),
               "next_observations": torch.randn(POOL, OBS, generator=gen),
               "dones": (torch.rand(POOL, generator=gen) < 0.1).float()}
    if source:
        columns["provenance"] = torch.randint(2, (POOL,), generator=gen)
    buffer = TransitionBuffer(columns)
    if source:
        lead = (POOL,) if members is None else (members, POOL)
        score, advantage = torch.rand(*lead, generator=gen) * 2 - 1, torch.randn(*lead, generator=gen)
        if members is None:
            buffer.add_column("dyn_score", score)
            buffer.add_column("advantage", advantage)
        else:
            buffer.add_member_column("dyn_score", score)
            buffer.add_member_column("advantage", advantage)
    return buffer


def make_agent(method: str, members=None, **iql) -> FilteredIQL:
    extra = {}
    if method == "otdf":
        vae = BehaviorVAE(OBS, ACT, hidden=16, generators=seeded_generators(0)).requires_grad_(False)
        extra = {"behavior_vae": vae, "constraint_weight": 0.1}
    return FilteredIQL(OBS, ACT, IQLConfig(hidden=32, steps=50, **iql), FilterConfig(method=method), "cpu",
                       seed=4, members=members, **extra)


def draw(buffer: TransitionBuffer, gen: torch.Generator, members) -> torch.Tensor:
    if members is None:
        return buffer.sample_indices(B, gen)
    return buffer.member_indices(B, [gen] * members)


def tensors(agent: FilteredIQL) -> list[torch.Tensor]:
    nets = [p for net in (agent.q, agent.q_target, agent.v, agent.policy) for p in net.parameters()]
    moments = [t for tree in (agent.state.exp_avg, agent.state.exp_avg_sq) for m in tree.values() for t in m.values()]
    return [t.detach().clone() for t in (*nets, *moments, agent.state.step)]


def run_both(method: str, members=None, steps: int = 6, compiled: bool = False, cuda_graphs=None, **iql):
    """The eager update and the whole step on identical batches: their infos, side by side."""
    gen = torch.Generator().manual_seed(1)
    source, target = pool(gen, True, members), pool(gen, False)
    eager, whole_agent = make_agent(method, members, **iql), make_agent(method, members, **iql)
    whole = WholeStep(whole_agent, source, target, compiled=compiled, cuda_graphs=cuda_graphs)
    infos = []
    for _ in range(steps):
        si, ti = draw(source, gen, members), draw(target, gen, members)
        eager_info = eager.update(source.take(si), target.take(ti))
        whole_info, diagnostics = whole(si, ti)
        if method == "iql-target":
            assert diagnostics is None
        else:
            assert torch.equal(diagnostics["dyn_score"], source.take(si)["dyn_score"])
            assert torch.equal(diagnostics["provenance"], source.take(si)["provenance"])
        infos.append((eager_info, whole_info))
    return eager, whole_agent, infos


def assert_same(eager_info, whole_info, rtol=1e-5, atol=1e-6):
    assert eager_info.keys() == whole_info.keys()
    for key, value in eager_info.items():
        if value.dtype == torch.bool:
            assert torch.equal(value, whole_info[key]), key
        else:
            torch.testing.assert_close(whole_info[key], value, rtol=rtol, atol=atol, msg=key)


@pytest.mark.parametrize("method,members,order", [
    ("dvdf-igdf", None, "authors"), ("dvdf-igdf", 3, "authors"), ("iql-target", None, "authors"),
    ("iql-mix", None, "authors"), ("otdf", None, "authors"), ("dvdf-igdf", 3, "joint"), ("otdf", None, "joint")])
def test_whole_step_matches_the_eager_update(method, members, order):
    eager, whole, infos = run_both(method, members, step_order=order)
    for eager_info, whole_info in infos:
        assert_same(eager_info, whole_info)
    for a, b in zip(tensors(eager), tensors(whole)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert whole.step == eager.step == 6
    assert whole.actor_lr == eager.actor_lr


# Each case compiles for ~20 s: the CPU default (authors' order, no CUDA set-up) in the default run.
@pytest.mark.parametrize("cuda_graphs,order", [(False, "authors"), pytest.param(True, "authors", marks=pytest.mark.slow),
                                               pytest.param(False, "joint", marks=pytest.mark.slow)])
def test_compiled_whole_step_matches_the_eager_update(cuda_graphs, order):
    """One static graph (batched members, so selection, member columns and all losses are in it).
    cuda_graphs=True is the CUDA set-up (static addresses, reduce-overhead) minus the capture,
    which inductor skips on CPU."""
    eager, whole, infos = run_both("dvdf-igdf", members=2, steps=4, compiled=True, cuda_graphs=cuda_graphs,
                                   step_order=order)
    for eager_info, whole_info in infos:
        assert_same(eager_info, whole_info, rtol=1e-4, atol=1e-5)
    for a, b in zip(tensors(eager), tensors(whole)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_checkpoints_are_interchangeable_with_the_eager_path():
    """A whole-step agent's state_dict resumes eagerly and vice versa (a reloaded optimiser state is
    picked up by the whole step)."""
    gen = torch.Generator().manual_seed(2)
    source, target = pool(gen, True), pool(gen, False)
    batches = [(draw(source, gen, None), draw(target, gen, None)) for _ in range(6)]
    reference = make_agent("dvdf-igdf")
    for si, ti in batches:
        reference.update(source.gather(si), target.gather(ti))

    whole_agent = make_agent("dvdf-igdf")
    whole = WholeStep(whole_agent, source, target, compiled=False)
    for si, ti in batches[:3]:
        whole(si, ti)
    eager_agent = make_agent("dvdf-igdf")
    eager_agent.load_state_dict(copy.deepcopy(whole_agent.state_dict()))
    for si, ti in batches[3:]:
        eager_agent.update(source.gather(si), target.gather(ti))
    for a, b in zip(tensors(reference), tensors(eager_agent)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)

    # Deep copies: torch's Optimizer.load_state_dict keeps (aliases) tensors that already match.
    whole_agent.load_state_dict(copy.deepcopy(reference.state_dict()))   # rewinds to step 6
    eager_agent.load_state_dict(copy.deepcopy(reference.state_dict()))
    si, ti = draw(source, gen, None), draw(target, gen, None)
    whole(si, ti)
    eager_agent.update(source.gather(si), target.gather(ti))
    for a, b in zip(tensors(eager_agent), tensors(whole_agent)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_adam_step_is_torch_adam():
    """adam_step_ with a changing learning rate tracks torch's fused Adam: parameters and moments."""
    gen = torch.Generator().manual_seed(3)
    params = [torch.nn.Parameter(torch.randn(7, 5, generator=gen)), torch.nn.Parameter(torch.randn(5, generator=gen))]
    mine = [p.detach().clone() for p in params]
    exp_avgs, exp_avg_sqs = [torch.zeros_like(p) for p in mine], [torch.zeros_like(p) for p in mine]
    reference = make_adam(params, 1e-2)
    # The formula as a compiled graph runs it (eagerly, adam_step_ is torch's fused kernel).
    traced, traced_avgs, traced_avg_sqs = ([torch.zeros_like(p) if i else p.detach().clone() for p in params]
                                           for i in range(3))
    traced_adam = torch.compile(adam_step_, backend="aot_eager", fullgraph=True)
    for step in range(20):
        lr = 1e-2 * (1 - step / 20)
        grads = [torch.randn(p.shape, generator=gen) for p in params]
        for p, g in zip(params, grads):
            p.grad = g
        reference.param_groups[0]["lr"] = lr
        reference.step()
        t = torch.tensor(step + 1.0)
        adam_step_(mine, grads, exp_avgs, exp_avg_sqs, torch.tensor(lr, dtype=torch.float64), t,
                   *adam_bias_corrections(t), 0.9, 0.999, 1e-8)
        traced_adam(traced, grads, traced_avgs, traced_avg_sqs, torch.tensor(lr, dtype=torch.float64), t,
                    *adam_bias_corrections(t))
    for a, b, c in zip(params, mine, traced):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(c, a, rtol=1e-6, atol=1e-7)
    for p, m, v in zip(params, exp_avgs, exp_avg_sqs):
        torch.testing.assert_close(m, reference.state[p]["exp_avg"], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(v, reference.state[p]["exp_avg_sq"], rtol=1e-6, atol=1e-7)


def test_a_source_method_needs_a_source_buffer():
    with pytest.raises(ValueError, match="source buffer"):
        WholeStep(make_agent("igdf"), None, pool(torch.Generator().manual_seed(0), False), compiled=False)


@pytest.mark.parametrize("whole", [False, True])
def test_no_host_synchronisation_inside_a_step(whole, monkeypatch):
    """Neither the eager update nor the whole step reads a tensor value on the host (no .item(), no
    Python branching on a tensor): every such read raises while a step runs (its function eagerly,
    so every op runs through Python)."""
    gen = torch.Generator().manual_seed(5)
    source, target = pool(gen, True, 2), pool(gen, False)
    agent = make_agent("dvdf-igdf", members=2)
    step = WholeStep(agent, source, target, compiled=False) if whole else None
    si, ti = draw(source, gen, 2), draw(target, gen, 2)
    source_batch, target_batch = source.take(si), target.take(ti)

    def host_read(*args, **kwargs):
        raise AssertionError("a tensor value was read on the host inside the step")

    for name in ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    for _ in range(2):
        if whole:
            step(si, ti)
        else:
            agent.update(source_batch, target_batch)
    monkeypatch.undo()
    assert agent.step == 2
