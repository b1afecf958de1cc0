"""The SAC learner (dvdf.algos.sac): one functional update - compiled equals eager, no host reads
inside it, it learns, its checkpoint round-trips; and the compile-mode choice."""

from __future__ import annotations

import copy

import pytest
import torch

from dvdf.algos import sac as sac_module
from dvdf.algos.sac import SACAgent, SACHyper, SACReplay, resolve_compile
from dvdf.errors import DvdfError

OBS, ACT = 5, 2


def filled_replay(rows: int = 512, seed: int = 0) -> SACReplay:
    replay = SACReplay(rows, OBS, ACT, "cpu")
    gen = torch.Generator().manual_seed(seed)
    replay.data.normal_(generator=gen)
    d = OBS + ACT
    replay.data[:, d + 1] = (torch.rand(rows, generator=gen) < 0.1).float()   # terminals
    replay.data[:, d + 2] = 0.0                                                # timeouts
    replay.size = rows
    return replay


def make_agent(compile: str = "off", hidden: int = 32, replay=None, **kwargs) -> SACAgent:
    hyper = SACHyper(batch_size=64, hidden=hidden, seed=3, **kwargs)
    return SACAgent(OBS, ACT, hyper, "cpu", replay if replay is not None else filled_replay(), compile=compile)


def tensors(agent: SACAgent) -> list[torch.Tensor]:
    state = agent.optimizer.state
    return [*agent.trained.parameters(), *agent.critic_target.parameters(),
            *(state[p][key] for p in agent.trained.parameters() for key in ("exp_avg", "exp_avg_sq", "step"))]


def run(agent: SACAgent, updates: int, seed: int = 11) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [agent.update(gen) for _ in range(updates)]


def test_compiled_update_matches_the_eager_update():
    torch.set_num_threads(1)
    eager, compiled = make_agent("off"), make_agent("step")
    eager_metrics, compiled_metrics = run(eager, 4), run(compiled, 4)
    for a, b in zip(eager_metrics, compiled_metrics):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    for a, b in zip(tensors(eager), tensors(compiled)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    assert not torch.equal(tensors(eager)[0], make_agent("off").actor.net.layers[0].weight)  # it moved
    # A checkpoint loaded after the compile (a resumed run): the compiled update, which skips its
    # guards from the second call on, continues from the loaded values, and every tensor keeps its
    # address (a captured CUDA graph reads them in place).
    other = make_agent("off")
    run(other, 2, seed=7)
    checkpoint = copy.deepcopy(other.state_dict())
    bound = [t.data_ptr() for t in tensors(compiled)]
    for agent in (eager, compiled):
        agent.load_state_dict(copy.deepcopy(checkpoint))
    assert [t.data_ptr() for t in tensors(compiled)] == bound
    for a, b in zip(run(eager, 3, seed=5), run(compiled, 3, seed=5)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    for a, b in zip(tensors(eager), tensors(compiled)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_update_is_the_sac_losses_through_torch_adam():
    """The functional update (losses -> grads -> adam_step_ -> Polyak) equals the same losses'
    backward() followed by torch.optim.Adam's step, for every trained tensor."""
    agent = make_agent("off")
    reference = copy.deepcopy(agent)
    index, noise = reference.draw(torch.Generator().manual_seed(11))
    batch = reference.replay.split(reference.replay.data.index_select(0, index))
    total, _ = reference.losses(dict(reference.trained.named_parameters()), batch, noise)
    adam = torch.optim.Adam(reference.trained.parameters(), lr=reference.hyper.lr)
    total.backward()
    adam.step()
    agent.update(torch.Generator().manual_seed(11))
    for (name, a), b in zip(agent.trained.named_parameters(), reference.trained.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
        assert not torch.equal(a, make_agent("off").trained.get_parameter(name))   # every tensor moved


def test_no_host_read_inside_the_update(monkeypatch):
    """Every read of a tensor value on the host raises while updates run (eagerly: every op goes
    through Python). The SAC of dvdf 0.1 (torch's Adam with a CPU step counter) failed this."""
    agent = make_agent("off")
    gen = torch.Generator().manual_seed(1)
    agent.update(gen)

    def host_read(*args, **kwargs):
        raise AssertionError("a tensor value was read on the host inside the update")

    for name in ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    for _ in range(2):
        agent.update(gen)
    monkeypatch.undo()
    assert int(agent.optimizer.state[agent.log_alpha]["step"]) == 3


def test_checkpoint_round_trip_continues_identically():
    a = make_agent("off")
    run(a, 3)
    b = make_agent("off", replay=a.replay)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    for x, y in zip(run(a, 3, seed=5), run(b, 3, seed=5)):
        assert torch.equal(x, y)
    for x, y in zip(tensors(a), tensors(b)):
        assert torch.equal(x, y)
    with pytest.raises(DvdfError, match="0.1"):
        b.load_state_dict({k: v for k, v in a.state_dict().items() if k != "optimizer"})


def test_sac_learns_a_contextual_bandit():
    """One-step episodes (terminal), reward -(a - target(s))^2 with target(s) = 0.5 tanh(s_0 + s_1):
    from uniformly random actions, the deterministic actor learns the target action."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    rows = 4096
    replay = SACReplay(rows, OBS, ACT, "cpu")
    obs = torch.rand(rows, OBS, generator=gen) * 2 - 1
    act = torch.rand(rows, ACT, generator=gen) * 2 - 1
    goal = 0.5 * torch.tanh(obs[:, :1] + obs[:, 1:2]).expand(rows, ACT)
    reward = -(act - goal).square().sum(-1)
    replay.data.copy_(torch.cat([obs, act, reward[:, None], torch.ones(rows, 1), torch.zeros(rows, 1), obs], 1))
    replay.size = rows
    agent = make_agent("off", hidden=64, replay=replay, lr=1e-3, init_temperature=0.1)
    test_obs = torch.rand(256, OBS, generator=gen) * 2 - 1
    test_goal = 0.5 * torch.tanh(test_obs[:, :1] + test_obs[:, 1:2]).expand(256, ACT)

    def error() -> float:
        with torch.no_grad():
            return float((agent.actor.deterministic(test_obs) - test_goal).square().mean())

    before = error()
    run(agent, 1500)
    after = error()
    assert after < 0.02 < before, (before, after)


def test_resolve_compile(monkeypatch):
    monkeypatch.setattr(sac_module, "cpp_compiler", lambda: "/usr/bin/g++")
    assert resolve_compile("auto", "cpu", 1_000_000)[0] == "step"
    assert resolve_compile("auto", "cpu", 100)[0] == "off"          # too short to repay compiling
    assert resolve_compile("off", "cpu", 1_000_000)[0] == "off"
    monkeypatch.setattr(sac_module, "cpp_compiler", lambda: None)
    mode, why = resolve_compile("auto", "cpu", 1_000_000)
    assert mode == "off" and "compiler" in why
    with pytest.raises(DvdfError, match="C\\+\\+ compiler"):
        resolve_compile("step", "cpu", 1_000_000)
    with pytest.raises(DvdfError, match="compile"):
        resolve_compile("fast", "cpu", 10)
