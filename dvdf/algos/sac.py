"""Soft Actor-Critic (Haarnoja et al. 2018, "SAC: Algorithms and Applications"): the learner that
trains dvdf's behaviour policies (the D4RL recipe, :mod:`dvdf.data.behaviour`).

Losses, per minibatch of B transitions (s, a, r, d, s'), temperature alpha = exp(log alpha):

    y        = r + gamma (1 - d) [min_j Q'_j(s', a') - alpha log pi(a'|s')],   a' ~ pi(.|s')
    L_Q      = sum_j mean_B (Q_j(s, a) - y)^2                                  (twin critic)
    L_pi     = mean_B [alpha log pi(a~|s) - min_j Q_j(s, a~)],                 a~ ~ pi(.|s)
    L_alpha  = -mean_B [log alpha (log pi(a~|s) + H_target)],                  H_target = -|A|

Q' is the Polyak-averaged target critic (tau = ``polyak``). Networks come from :mod:`dvdf.nets`
(twin Q as one batched MLP, tanh-Gaussian actor).

The update is ONE function of tensors (:meth:`SACAgent.step_fn`): gather the minibatch from the
device-resident replay (:class:`SACReplay`), the three losses, their gradients in one backward
pass (``torch.func``), one Adam over every trained tensor (:func:`dvdf.algos.optim.adam_step_`,
the state of a :func:`~dvdf.algos.optim.make_adam` optimiser) and the Polyak average
(:func:`dvdf.algos.iql.polyak_update`). The only eager work per update is drawing the row indices
and the Gaussian noise from the run's ``torch.Generator`` (a generator cannot enter a graph).
``compile: step`` runs that function through ``torch.compile``; ``off`` runs the same function
eagerly; ``auto`` picks (see :func:`resolve_compile`). No value is read on the host inside it.

One backward for all three losses means the actor's loss sees the critic of this step, before its
own update (the sequential form - critic step, then actor step - sees the updated critic). The two
forms have the same fixed points and learn alike; one pass saves a forward and keeps the whole
update one graph. The critic's weights receive no gradient from L_pi (it is evaluated with
detached weights; the gradient reaches the actor through the action), and alpha none from L_Q or
L_pi (alpha enters them detached).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value

from dvdf.algos.compile_mode import cpp_compiler, skip_guards_after_first_call
from dvdf.algos.iql import polyak_update
from dvdf.algos.optim import adam_bias_corrections, adam_step_, init_adam_state, make_adam
from dvdf.atomic import atomic_path
from dvdf.errors import DvdfError
from dvdf.nets import TanhGaussianPolicy, TwinQ, seeded_generators, tanh_gaussian

METRIC_NAMES = ("critic_loss", "actor_loss", "alpha", "entropy", "q_mean")
CompileMode = Literal["auto", "off", "step"]
COMPILE_MODES = ("auto", "off", "step")
# ``auto`` compiles runs of at least this many updates: compiling costs ~20-40 s of one CPU core,
# which a run of ~5k+ updates repays many times over at the compiled speed-up measured.
AUTO_COMPILE_MIN_UPDATES = 5_000


@dataclass(frozen=True)
class SACHyper:
    """SAC's hyperparameters (the standard values; batch 256, 2x256 ReLU MLPs, Adam 3e-4)."""

    batch_size: int = 256
    lr: float = 3e-4
    discount: float = 0.99          # gamma
    polyak: float = 0.005           # tau of the target critic
    hidden: int = 256
    layers: int = 2
    init_temperature: float = 1.0   # alpha at the start
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size <= 0 or self.hidden <= 0 or self.layers <= 0 or self.lr <= 0:
            raise DvdfError("sac: batch_size, hidden, layers and lr must be > 0")
        if self.init_temperature <= 0:
            raise DvdfError("sac: init_temperature must be > 0")


def resolve_compile(mode: str, device: str | torch.device, updates: int) -> tuple[str, str]:
    """The mode a run uses, and why (one phrase for the run header).

    ``auto``: ``step`` where torch.compile can build kernels for ``device`` (a GPU, or a C++
    compiler for the CPU) and the run has at least ``AUTO_COMPILE_MIN_UPDATES`` updates to repay
    the compile time; otherwise ``off``. ``step`` without a compiler is an error, not a silent
    eager run.
    """
    if mode not in COMPILE_MODES:
        raise DvdfError(f"sac compile must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    device = torch.device(device)
    can_build = device.type == "cuda" or cpp_compiler() is not None
    if mode == "step":
        if not can_build:
            raise DvdfError("sac compile: step needs a C++ compiler (g++) for torch.compile on CPU; "
                            "install one or use compile: off")
        return "step", "requested"
    if mode == "off":
        return "off", "requested"
    if not can_build:
        return "off", "auto: no C++ compiler for torch.compile on CPU"
    if updates < AUTO_COMPILE_MIN_UPDATES:
        return "off", f"auto: {updates} updates do not repay the compile time"
    return "step", f"auto: {'GPU' if device.type == 'cuda' else 'C++ compiler'} present, {updates} updates"


# ------------------------------------------------------------------------------ replay
class SACReplay:
    """SAC's growing replay buffer on the training device: one packed float tensor of capacity
    rows, each ``[s, a, r, terminal, timeout, s']``.

    Packing makes a minibatch one ``index_select`` and a stored step one row copy; preallocating
    keeps the tensor's address fixed (a captured CUDA graph reads it in place). Persisted as
    chunk files (one per checkpoint interval), so a checkpoint writes only the new rows.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: str | torch.device):
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.width = 2 * obs_dim + act_dim + 3
        self.data = torch.zeros(capacity, self.width, device=device)
        self.size = 0
        self.persisted = 0

    def add(self, obs, act, reward, terminal, timeout, next_obs) -> None:
        flags = (reward, float(terminal), float(timeout))
        row = np.concatenate([obs, act, flags, next_obs]).astype(np.float32)
        self.data[self.size].copy_(torch.from_numpy(row))
        self.size += 1

    def split(self, rows: Tensor) -> dict[str, Tensor]:
        """Column views of packed rows."""
        d, a = self.obs_dim, self.act_dim
        return {"observations": rows[:, :d], "actions": rows[:, d:d + a], "rewards": rows[:, d + a],
                "terminals": rows[:, d + a + 1], "timeouts": rows[:, d + a + 2],
                "next_observations": rows[:, d + a + 3:]}

    def sample_indices(self, batch_size: int, generator: torch.Generator) -> Tensor:
        return torch.randint(self.size, (batch_size,), generator=generator, device=self.data.device)

    def save_new_rows(self, directory: Path) -> None:
        if self.size == self.persisted:
            return
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / f"rows_{self.persisted:09d}_{self.size:09d}.pt") as tmp:
            torch.save(self.data[self.persisted:self.size].cpu().clone(), tmp)
        self.persisted = self.size

    def load(self, directory: Path, size: int) -> None:
        """Rows [0, size) from the chunk files (later chunks of an interrupted run are ignored)."""
        self.size = 0
        while self.size < size:
            # Several chunks can start here (a crash after a chunk, before its checkpoint); the
            # run is deterministic, so they agree on their common rows: take the longest.
            matches = sorted(directory.glob(f"rows_{self.size:09d}_*.pt"))
            if not matches:
                raise DvdfError(f"{directory}: replay chunk starting at row {self.size} is missing")
            rows = torch.load(matches[-1], weights_only=True)
            rows = rows[: size - self.size]
            self.data[self.size:self.size + len(rows)].copy_(rows.to(self.data.device))
            self.size += len(rows)
        self.persisted = self.size


# ------------------------------------------------------------------------------ agent
class _Trained(nn.Module):
    """The trained tensors as one module: actor, twin critic, log alpha (one optimiser over all)."""

    def __init__(self, actor: TanhGaussianPolicy, critic: TwinQ, log_alpha: nn.Parameter):
        super().__init__()
        self.actor, self.critic, self.log_alpha = actor, critic, log_alpha


class SACAgent:
    """Networks, the one optimiser and the update (see the module docstring); tensors on ``device``.

    ``compile``: ``off`` or ``step`` (resolve ``auto`` first with :func:`resolve_compile`).
    ``cuda_graphs`` (default: on CUDA devices when compiled) captures the compiled update as a CUDA
    graph (``mode="reduce-overhead"``), replayed with one launch per update.
    """

    def __init__(self, obs_dim: int, act_dim: int, hyper: SACHyper, device: str | torch.device,
                 replay: SACReplay, compile: str = "off", cuda_graphs: Optional[bool] = None):
        if compile not in ("off", "step"):
            raise ValueError(f"SACAgent compile must be 'off' or 'step' (resolve 'auto' first), got {compile!r}")
        self.hyper = hyper
        self.device = torch.device(device)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        init = seeded_generators([hyper.seed, hyper.seed + 1])
        width, depth = hyper.hidden, hyper.layers
        self.actor = TanhGaussianPolicy(obs_dim, act_dim, width, depth, generators=init[0]).to(self.device)
        self.critic = TwinQ(obs_dim, act_dim, width, depth, generators=init[1]).to(self.device)
        self.critic_target = TwinQ(obs_dim, act_dim, width, depth).to(self.device)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(hyper.init_temperature), device=self.device))
        self.target_entropy = -float(act_dim)
        self.trained = _Trained(self.actor, self.critic, self.log_alpha)
        self.optimizer = make_adam(self.trained.parameters(), lr=hyper.lr)
        self.replay = replay
        self.compile = compile
        self.cuda_graphs = compile == "step" and (self.device.type == "cuda" if cuda_graphs is None else cuda_graphs)
        self._bind_optimizer()
        self._fn: Callable = self.step_fn
        if self.cuda_graphs:
            # Inputs a CUDA graph reads in place (not copied before every replay): the replay
            # storage and every tensor the update mutates.
            for tensor in (replay.data, *self.trained.parameters(), *self.critic_target.parameters()):
                torch._dynamo.mark_static_address(tensor)
            self._fn = torch.compile(self.step_fn, mode="reduce-overhead", dynamic=False)
        elif compile == "step":
            # cpp_wrapper: the compiled graph's kernel calls run from C++, not Python.
            # Every tensor is updated and loaded in place (_adopt_optimizer_state): guards can be
            # skipped after the compile (~10% of a CPU update would go to re-checking ~100 tensors).
            self._fn = skip_guards_after_first_call(
                torch.compile(self.step_fn, dynamic=False, options={"cpp_wrapper": True}))

    def _bind_optimizer(self) -> None:
        """Adam's per-tensor state as the lists :func:`adam_step_` updates in place (the optimiser's
        own tensors, so ``optimizer.state_dict()`` is the checkpoint)."""
        init_adam_state(self.optimizer)
        (group,) = self.optimizer.param_groups
        states = [self.optimizer.state[p] for p in group["params"]]
        self._params = list(group["params"])
        self._names = [name for name, _ in self.trained.named_parameters()]
        self._exp_avgs = [s["exp_avg"] for s in states]
        self._exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        self._steps = [s["step"] for s in states]
        self._betas, self._eps = group["betas"], group["eps"]
        self._lr = torch.full((), group["lr"], dtype=torch.float64, device=self.device)
        self._bound_state = self.optimizer.state
        if self.cuda_graphs:
            for tensor in (*self._exp_avgs, *self._exp_avg_sqs, *self._steps, self._lr):
                torch._dynamo.mark_static_address(tensor)

    # ---------------------------------------------------------------- the update
    def draw(self, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """This update's random inputs: B row indices, and (2, B, |A|) standard normal noise for the
        actions a' (next states) and a~ (states)."""
        index = self.replay.sample_indices(self.hyper.batch_size, generator)
        noise = torch.randn((2, self.hyper.batch_size, self.act_dim), generator=generator, device=self.device)
        return index, noise

    def update(self, generator: torch.Generator) -> Tensor:
        """One SAC update from the replay; the metrics (METRIC_NAMES) as one tensor (no host sync)."""
        if self.optimizer.state is not self._bound_state:   # optimizer.load_state_dict replaced it
            self._adopt_optimizer_state()
        index, noise = self.draw(generator)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
            return self._fn(index, noise).clone()  # graph outputs are overwritten by the next replay
        return self._fn(index, noise)

    def step_fn(self, index: Tensor, noise: Tensor) -> Tensor:
        """The whole update from its random inputs (compiled as one graph in ``compile: step``)."""
        batch = self.replay.split(self.replay.data.index_select(0, index))
        params = dict(self.trained.named_parameters())
        grads, (_, metrics) = grad_and_value(self.losses, has_aux=True)(params, batch, noise)
        with torch.no_grad():
            torch._foreach_add_(self._steps, 1.0)     # every tensor shares the step count t
            t = self._steps[0]
            beta1, beta2 = self._betas
            bias1, bias2_sqrt = adam_bias_corrections(t, beta1, beta2)
            adam_step_(self._params, [grads[name] for name in self._names], self._exp_avgs, self._exp_avg_sqs,
                       self._lr, t, bias1, bias2_sqrt, beta1, beta2, self._eps)
            polyak_update(self.critic_target.parameters(), self.critic.parameters(), self.hyper.polyak)
        return metrics

    def losses(self, params: dict[str, Tensor], batch: dict[str, Tensor], noise: Tensor
               ) -> tuple[Tensor, Tensor]:
        """L_Q + L_pi + L_alpha (their gradients are disjoint, see the module docstring) and the
        detached metrics, as a function of the trained tensors ``params``."""
        actor = {k[len("actor."):]: v for k, v in params.items() if k.startswith("actor.")}
        critic = {k[len("critic."):]: v for k, v in params.items() if k.startswith("critic.")}
        log_alpha = params["log_alpha"]
        obs, act, next_obs = batch["observations"], batch["actions"], batch["next_observations"]
        alpha = log_alpha.detach().exp()
        with torch.no_grad():
            next_act, next_logp = tanh_gaussian(*functional_call(self.actor, actor, (next_obs,)), noise[0])
            next_q = self.critic_target(next_obs, next_act).min(0).values - alpha * next_logp
            target = batch["rewards"] + self.hyper.discount * (1.0 - batch["terminals"]) * next_q
        q = functional_call(self.critic, critic, (obs, act))                     # (2, B)
        critic_loss = (q - target).square().mean(1).sum()
        new_act, logp = tanh_gaussian(*functional_call(self.actor, actor, (obs,)), noise[1])
        frozen = {k: v.detach() for k, v in critic.items()}
        q_pi = functional_call(self.critic, frozen, (obs, new_act)).min(0).values
        actor_loss = (alpha * logp - q_pi).mean()
        alpha_loss = -(log_alpha * (logp.detach() + self.target_entropy)).mean()
        metrics = torch.stack([critic_loss.detach(), actor_loss.detach(), alpha, -logp.detach().mean(),
                               q.detach().mean()])
        return critic_loss + actor_loss + alpha_loss, metrics

    # ---------------------------------------------------------------- acting and state
    @torch.no_grad()
    def act(self, obs: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """A stochastic action for one observation (exploration during training)."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)[None]
        action, _ = self.actor.sample(obs_t, generator)
        return action[0].cpu().numpy()

    def state_dict(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "critic_target": self.critic_target.state_dict(),
                "log_alpha": self.log_alpha.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "optimizer" not in state:
            raise DvdfError("SAC checkpoint from dvdf 0.1 (three optimisers) cannot be resumed by this version; "
                            "delete the run directory to retrain")
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        # load_state_dict keeps each parameter's own device for its state (CPU-saved -> device).
        self.optimizer.load_state_dict(state["optimizer"])
        self._adopt_optimizer_state()

    def _adopt_optimizer_state(self) -> None:
        """After torch's ``optimizer.load_state_dict`` (which makes new state tensors): copy the
        loaded values into the tensors the update was built on and put those back, so every
        tensor the compiled update (or a captured CUDA graph) reads keeps its address."""
        (group,) = self.optimizer.param_groups
        for param, *bound in zip(self._params, self._exp_avgs, self._exp_avg_sqs, self._steps):
            loaded = self.optimizer.state[param]
            for key, tensor in zip(("exp_avg", "exp_avg_sq", "step"), bound):
                with torch.no_grad():
                    tensor.copy_(loaded[key])
                loaded[key] = tensor
        self._lr.fill_(group["lr"])
        self._bound_state = self.optimizer.state
