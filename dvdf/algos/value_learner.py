"""Stage 1: the value model pre-trained on the source data (SQL by default, IQL = ablation).

Only the twin critic and V are learned (DVDF needs no actor here). Per step, with
u = min(Qt1, Qt2)(s, a) - V(s) and Qt the Polyak-averaged critic:
  V: SQL's sparse loss (alpha) or IQL's expectile loss (tau);
  Q: unweighted twin TD loss to r + gamma (1 - done) V(s');
  Qt <- Polyak(Qt, Q).
The advantage of a source transition, cached for stage 3, is A(s, a) = min(Q1, Q2)(s, a) - V(s)
with the critic chosen by ``value.advantage_critic``: the online critic Q by default (the authors'
code saves the online critic and V and scores with them), or the target critic Qt (the quantity
V was fitted against; dvdf 0.1.0's choice).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from dvdf.algos.iql import expectile_value_loss, polyak_update, td_target, weighted_td_loss
from dvdf.algos.optim import make_adam
from dvdf.algos.sql import default_sql_alpha, sparse_value_loss
from dvdf.config import ValueStageConfig
from dvdf.nets import TwinQ, ValueNet, seeded_generators

ADVANTAGE_CHUNK = 65_536  # source transitions per no-grad advantage pass


class ValueLearner(nn.Module):
    """Twin Q + V trained with SQL or IQL; ``update(batch)`` and ``advantage(obs, act)``.

    ``state_dict()`` holds the networks (critic, target critic, V), enough to rebuild the frozen
    model; optimiser state is not kept (the stage is trained once and cached).
    """

    def __init__(self, obs_dim: int, act_dim: int, cfg: ValueStageConfig, robot: str = "",
                 seed: int = 0, device="cpu"):
        super().__init__()
        self.cfg = cfg
        self.alpha = cfg.sql_alpha if cfg.sql_alpha is not None else default_sql_alpha(robot)
        gens = seeded_generators(seed)
        self.q = TwinQ(obs_dim, act_dim, cfg.hidden, cfg.layers, generators=gens)
        self.v = ValueNet(obs_dim, cfg.hidden, cfg.layers, generators=gens)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.to(device)
        self.q_optimizer = make_adam(self.q.parameters(), cfg.lr)
        self.v_optimizer = make_adam(self.v.parameters(), cfg.lr)

    def value_loss(self, value: Tensor, target_q: Tensor) -> tuple[Tensor, dict]:
        if self.cfg.model == "sql":
            return sparse_value_loss(value, target_q, self.alpha)
        return expectile_value_loss(value, target_q, self.cfg.expectile)

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One gradient step on a batch of source transitions; returns detached info tensors."""
        obs, act = batch["observations"], batch["actions"]
        with torch.no_grad():
            target_q = self.q_target(obs, act).amin(-2)
            y = td_target(batch["rewards"], batch["dones"], self.v(batch["next_observations"]),
                          self.cfg.discount)
        v_loss, v_info = self.value_loss(self.v(obs), target_q)
        q_loss, q_info = weighted_td_loss(self.q(obs, act), y)
        self.v_optimizer.zero_grad(set_to_none=True)
        self.q_optimizer.zero_grad(set_to_none=True)
        (v_loss + q_loss).backward()   # disjoint graphs: same gradients as two backward passes
        self.v_optimizer.step()
        self.q_optimizer.step()
        polyak_update(self.q_target.parameters(), self.q.parameters(), self.cfg.polyak)
        return {**v_info, **q_info}

    @property
    def advantage_critic(self) -> TwinQ:
        """The critic whose min(Q1, Q2) enters A: online Q or target Qt (``cfg.advantage_critic``)."""
        return self.q if self.cfg.advantage_critic == "online" else self.q_target

    @torch.no_grad()
    def advantage(self, obs: Tensor, act: Tensor) -> Tensor:
        """A(s, a) = min(Q1, Q2)(s, a) - V(s), Q = :attr:`advantage_critic`."""
        return self.advantage_critic(obs, act).amin(-2) - self.v(obs)


def fit_value_model(source: dict[str, Tensor], cfg: ValueStageConfig, robot: str, seed: int, device,
                    progress: bool = False) -> ValueLearner:
    """Train the stage-1 value model on the source transitions for ``cfg.steps`` steps.

    ``robot`` ('hopper', 'ant', ...) selects SQL's default alpha. Minibatches of ``cfg.batch_size``
    are drawn uniformly with a generator seeded from ``seed``. Returns the learner, frozen.
    """
    device = torch.device(device)
    obs = source["observations"]
    learner = ValueLearner(obs.shape[-1], source["actions"].shape[-1], cfg, robot, seed, device)
    gen = torch.Generator(device=device).manual_seed(seed)
    keys = ("observations", "actions", "rewards", "next_observations", "dones")
    for _ in tqdm(range(cfg.steps), desc=f"value model ({cfg.model})", disable=not progress, mininterval=1.0):
        idx = torch.randint(obs.shape[0], (cfg.batch_size,), generator=gen, device=device)
        learner.update({k: source[k][idx] for k in keys})
    learner.requires_grad_(False)
    return learner.eval()


@torch.no_grad()
def source_advantages(learner: ValueLearner, source: dict[str, Tensor],
                      chunk: int = ADVANTAGE_CHUNK) -> Tensor:
    """A(s, a) of every source transition, ``(N_source,)``, in chunks, without gradients (the
    stage-1 artifact that DVDF's score g = lambda h + (1 - lambda) An reads)."""
    obs, act = source["observations"], source["actions"]
    parts = [learner.advantage(obs[i:i + chunk], act[i:i + chunk]) for i in range(0, obs.shape[0], chunk)]
    return torch.cat(parts) if parts else obs.new_zeros(0)
