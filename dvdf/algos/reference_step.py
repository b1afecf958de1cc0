"""The authors' released stage-3 step (their DV_IGDF.train), restated in plain PyTorch.

It is dvdf's yardstick, not a training mode: tests/test_iql_step.py checks that dvdf's default step
(:mod:`dvdf.algos.iql_step`) reproduces it on identical networks and batches, and ``dvdf bench``
times it beside dvdf's step ("the authors' step"). Written the way their code runs: three
``torch.optim.Adam`` (torch's default implementation) and a ``CosineAnnealingLR`` on the actor's,
each loss built, backpropagated and stepped one after another:

  select the top floor(B xi) source rows by g = lambda h + (1 - lambda) An, weights exp(h); then on
  [kept source; target]: (a) u = min(Qt1, Qt2)(s, a) - V(s); expectile loss; (b) V's Adam step;
  (c) y = r + gamma (1 - d) V(s') with the updated V; w-weighted twin TD loss; Q's Adam step;
  (d) Polyak; (e) AWR loss mean(min(exp(beta u), 100) (tanh(mu(s)) - a)^2) over all batch x action
  elements; the actor's Adam step; the cosine schedule's step.

The dynamics score h and the advantage A come with the batch, precomputed, as dvdf's step gets
them; where the authors' code evaluates its scorer inside the step, that work is left out here, so
timing this restatement can only understate the cost of their step.
:func:`authors_networks` builds networks the way their code does (separate ``nn.Sequential`` MLPs
for Q1, Q2, V and the actor) for the bench; the tests pass dvdf's own networks instead.
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import Tensor, nn

EXP_ADV_MAX = 100.0


class _TwinSequential(nn.Module):
    """Q1 and Q2 as two separate MLPs on cat(s, a), returning ``(2, B)`` (their TwinQ)."""

    def __init__(self, q1: nn.Module, q2: nn.Module):
        super().__init__()
        self.q1, self.q2 = q1, q2

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        x = torch.cat([obs, act], dim=-1)
        return torch.stack([self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)])


class _MeanActor(nn.Module):
    """tanh of the first ``act_dim`` outputs (the Gaussian's mean) of an MLP."""

    def __init__(self, net: nn.Module, act_dim: int):
        super().__init__()
        self.net, self.act_dim = net, act_dim

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.net(obs)[..., : self.act_dim])


class _SqueezeLast(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).squeeze(-1)


def _mlp(in_dim: int, out_dim: int, hidden: int, layers: int) -> nn.Sequential:
    widths = [in_dim] + [hidden] * layers
    modules: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        modules += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*modules, nn.Linear(widths[-1], out_dim))


def authors_networks(obs_dim: int, act_dim: int, hidden: int = 256, layers: int = 2, seed: int = 0
                     ) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(twin critic -> ``(2, B)``, V -> ``(B,)``, deterministic actor tanh(mu(s))) as their code
    builds them: ``nn.Linear`` layers, Q1 and Q2 separate networks."""
    torch.manual_seed(seed)
    q = _TwinSequential(_mlp(obs_dim + act_dim, 1, hidden, layers), _mlp(obs_dim + act_dim, 1, hidden, layers))
    v = _SqueezeLast(_mlp(obs_dim, 1, hidden, layers))
    actor = _MeanActor(_mlp(obs_dim, 2 * act_dim, hidden, layers), act_dim)
    return q, v, actor


class AuthorsStep:
    """One call = one of their training steps on a source and a target batch (dvdf-igdf).

    Args:
        q: twin critic, ``(obs, act) -> (2, B)``; v: ``obs -> (B,)``; actor: ``obs -> tanh(mu(s))``.
        q_target: the Polyak target critic (default: a copy of ``q``).
        lr, actor_lr, steps, discount, expectile, beta, polyak: as :class:`dvdf.config.IQLConfig`.
        tradeoff, keep_ratio: lambda and xi; ``kept``: the kept count floor(B xi) given exactly.
    """

    def __init__(self, q: nn.Module, v: nn.Module, actor: nn.Module, q_target: Optional[nn.Module] = None, *,
                 lr: float = 3e-4, actor_lr: float = 3e-4, steps: int = 1_000_000, discount: float = 0.99,
                 expectile: float = 0.7, beta: float = 3.0, polyak: float = 0.005, tradeoff: float = 0.7,
                 kept: int = 64):
        self.q, self.v, self.actor = q, v, actor
        self.q_target = copy.deepcopy(q).requires_grad_(False) if q_target is None else q_target
        self.v_optimizer = torch.optim.Adam(v.parameters(), lr=lr)
        self.q_optimizer = torch.optim.Adam(q.parameters(), lr=lr)
        self.actor_optimizer = torch.optim.Adam(actor.parameters(), lr=actor_lr)
        self.actor_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.actor_optimizer, steps)
        self.discount, self.expectile, self.beta, self.polyak = discount, expectile, beta, polyak
        self.tradeoff, self.kept = tradeoff, kept

    def select(self, source: dict[str, Tensor], target: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
        """[kept source; target] and the weights: top ``kept`` by g, weight exp(h); target weight 1."""
        h, adv = source["dyn_score"], source["advantage"]
        adv_norm = (adv - adv.min()) / (adv.max() - adv.min() + 1e-8)
        g = self.tradeoff * h + (1.0 - self.tradeoff) * adv_norm
        index = torch.topk(g, self.kept).indices
        keys = ("observations", "actions", "rewards", "next_observations", "dones")
        batch = {k: torch.cat([source[k][index], target[k]]) for k in keys}
        weight = torch.cat([h[index].exp(), torch.ones_like(target["rewards"])])
        return batch, weight

    def __call__(self, source: dict[str, Tensor], target: dict[str, Tensor]) -> dict[str, Tensor]:
        batch, weight = self.select(source, target)
        obs, act = batch["observations"], batch["actions"]
        with torch.no_grad():                                                  # (a)
            target_q = self.q_target(obs, act).min(0).values
        value = self.v(obs)
        adv = target_q - value
        v_loss = (torch.abs(self.expectile - (adv < 0).float()) * adv ** 2).mean()
        self.v_optimizer.zero_grad()                                           # (b)
        v_loss.backward()
        self.v_optimizer.step()

        with torch.no_grad():                                                  # (c)
            next_v = self.v(batch["next_observations"])
            y = batch["rewards"] + (1.0 - batch["dones"]) * self.discount * next_v
        q1, q2 = self.q(obs, act)
        q_loss = (weight * (q1 - y) ** 2).mean() + (weight * (q2 - y) ** 2).mean()
        self.q_optimizer.zero_grad()
        q_loss.backward()
        self.q_optimizer.step()

        with torch.no_grad():                                                  # (d)
            for t, p in zip(self.q_target.parameters(), self.q.parameters()):
                t.copy_((1.0 - self.polyak) * t + self.polyak * p)

        exp_adv = torch.exp(self.beta * adv.detach()).clamp(max=EXP_ADV_MAX)    # (e)
        bc = (self.actor(obs) - act) ** 2
        actor_loss = (exp_adv.unsqueeze(-1) * bc).mean()
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        self.actor_optimizer.step()
        self.actor_schedule.step()
        return {"v_loss": v_loss.detach(), "q_loss": q_loss.detach(), "actor_loss": actor_loss.detach()}
