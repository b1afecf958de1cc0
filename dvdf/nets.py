"""Networks of every stage, each written once, with an optional leading "members" dimension.

A network built with ``members=None`` is one ordinary model: inputs ``(B, in)``, outputs ``(B, out)``.
Built with ``members=K`` it is K independent models trained as one: parameters carry a leading K
dimension, inputs are ``(K, B, in)`` (or ``(B, in)``, shared by every member) and outputs
``(K, B, out)``. One batched matmul (``torch.baddbmm``) replaces K small ones; since Adam is
element-wise and member losses are summed, training the batch is exactly training K models.

Parameters are always stored as ``(K, in, out)`` (K = 1 for a single model), so a single model's
state dict has the same layout as a one-member batch. Initialisation matches ``nn.Linear``
(uniform in +-1/sqrt(fan_in)) and draws from explicit ``torch.Generator``s: member k of a batched
model built with generators ``[g_0, ..., g_{K-1}]`` gets exactly the weights a single model built
with ``g_k`` gets.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOG_STD_MIN = -20.0
LOG_STD_MAX = 2.0
VAE_LOG_STD_MIN = -4.0   # BCQ/SPOT clamp of the VAE encoder's log-std
VAE_LOG_STD_MAX = 15.0
VAE_PRIOR_CLIP = 0.5     # BCQ: latent drawn from the prior is clipped to +-0.5

Generators = Union[None, torch.Generator, Sequence[Optional[torch.Generator]]]


def _generator_list(generators: Generators, count: int) -> list[Optional[torch.Generator]]:
    if generators is None or isinstance(generators, torch.Generator):
        return [generators] * count
    generators = list(generators)
    if len(generators) != count:
        raise ValueError(f"expected {count} generators (one per member), got {len(generators)}")
    return generators


def seeded_generators(seeds: Union[int, Sequence[int]]) -> list[torch.Generator]:
    """CPU generators for initialisation (CPU init then ``.to(device)`` is device independent)."""
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


class BatchedLinear(nn.Module):
    """K independent affine maps ``y_k = x_k W_k + b_k``; weight ``(K, in, out)``, bias ``(K, out)``."""

    def __init__(self, in_features: int, out_features: int, members: Optional[int] = None,
                 generators: Generators = None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.members = members
        count = 1 if members is None else members
        self.weight = nn.Parameter(torch.empty(count, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(count, out_features))
        self.reset_parameters(generators)

    @torch.no_grad()
    def reset_parameters(self, generators: Generators = None) -> None:
        bound = 1.0 / math.sqrt(self.in_features)  # nn.Linear's default, weight and bias alike
        for k, gen in enumerate(_generator_list(generators, self.weight.shape[0])):
            self.weight[k].uniform_(-bound, bound, generator=gen)
            self.bias[k].uniform_(-bound, bound, generator=gen)

    def forward(self, x: Tensor) -> Tensor:
        # The common shapes return the matmul's own output, not a view of it: MLP applies ReLU in
        # place, and an in-place op on a view makes autograd copy the whole base tensor.
        if self.members is None:
            # The single-model fast path: one addmm. view() (not [0]) drops the member dimension
            # because its backward is free, where indexing's backward zero-fills and copies.
            weight = self.weight.view(self.in_features, self.out_features)
            bias = self.bias.view(self.out_features)
            if x.dim() == 2:
                return torch.addmm(bias, x, weight)
            out = torch.addmm(bias, x.reshape(-1, self.in_features), weight)
            return out.view(*x.shape[:-1], self.out_features)
        if x.dim() == 2:
            # Input shared by every member (e.g. the twin critic's heads): a stride-0 expand feeds
            # the batched matmul directly, faster than a broadcasting matmul plus a bias add.
            x = x.expand(self.members, *x.shape)
        if x.dim() == 3:
            return self._batched(x)
        out = self._batched(x.reshape(self.members, -1, self.in_features))
        return out.view(*x.shape[:-1], self.out_features)

    def _batched(self, x: Tensor) -> Tensor:
        if self.out_features == 1:
            # A value head: CPU bmm with a single output column is several times slower (forward
            # and backward) than the equivalent broadcast multiply-and-sum.
            return (x * self.weight.transpose(1, 2)).sum(-1, keepdim=True) + self.bias.unsqueeze(1)
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, members={self.members}"


class MLP(nn.Module):
    """``layers`` hidden ReLU layers of width ``hidden`` and a linear output, over BatchedLinear."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, layers: int = 2,
                 members: Optional[int] = None, generators: Generators = None):
        super().__init__()
        self.members = members
        widths = [in_dim] + [hidden] * layers + [out_dim]
        count = 1 if members is None else members
        gens = _generator_list(generators, count)
        self.layers = nn.ModuleList(
            BatchedLinear(a, b, members, gens) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: Tensor) -> Tensor:
        *hidden, last = self.layers
        for layer in hidden:
            # In-place ReLU: the matmul's backward needs its inputs, not its output.
            x = layer(x).relu_()
        return last(x)


class ValueNet(nn.Module):
    """State value V(s): ``(..., obs_dim) -> (...)``."""

    def __init__(self, obs_dim: int, hidden: int = 256, layers: int = 2, members: Optional[int] = None,
                 generators: Generators = None):
        super().__init__()
        self.net = MLP(obs_dim, 1, hidden, layers, members, generators)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).squeeze(-1)


class TwinQ(nn.Module):
    """Twin critic Q1, Q2 as ONE batched MLP whose two heads are members.

    ``members=None``: ``(B, obs), (B, act) -> (2, B)``. ``members=K``: ``(K, B, ...) -> (K, 2, B)``;
    the underlying MLP has 2K members ordered (model, head), and head h of model k is initialised
    from model k's generator, as a single TwinQ built with that generator would be.
    """

    HEADS = 2

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, layers: int = 2,
                 members: Optional[int] = None, generators: Generators = None):
        super().__init__()
        self.members = members
        count = 1 if members is None else members
        per_model = _generator_list(generators, count)
        head_gens = [g for g in per_model for _ in range(self.HEADS)]
        self.net = MLP(obs_dim + act_dim, 1, hidden, layers, self.HEADS * count, head_gens)

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        x = torch.cat([obs, act], dim=-1)
        if self.members is None:
            return self.net(x).squeeze(-1)                        # shared input -> (2, B)
        k, batch = x.shape[0], x.shape[1:-1]
        x = x.unsqueeze(1).expand(k, self.HEADS, *batch, x.shape[-1])
        x = x.reshape(k * self.HEADS, *batch, x.shape[-1])
        return self.net(x).squeeze(-1).view(k, self.HEADS, *batch)


class TanhGaussianPolicy(nn.Module):
    """pi(a|s) = tanh(N(mu(s), sigma(s))), log sigma clamped to [-20, 2].

    The deterministic action (evaluation and IQL's AWR regression) is tanh(mu(s)).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, layers: int = 2,
                 members: Optional[int] = None, generators: Generators = None):
        super().__init__()
        self.act_dim = act_dim
        self.net = MLP(obs_dim, 2 * act_dim, hidden, layers, members, generators)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and clamped log-std of the pre-tanh Gaussian."""
        mean, log_std = self.net(obs).split(self.act_dim, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def deterministic(self, obs: Tensor) -> Tensor:
        mean = self.net(obs)[..., : self.act_dim]
        return torch.tanh(mean)

    def sample(self, obs: Tensor, generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
        """A reparameterised sample and its log-probability (with the tanh change of variables)."""
        mean, log_std = self(obs)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return tanh_gaussian(mean, log_std, noise)


def tanh_gaussian(mean: Tensor, log_std: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
    """The tanh-Gaussian sample a = tanh(mean + exp(log_std) * noise) for standard normal ``noise``,
    and its log-probability (with the tanh change of variables), summed over the action dimension."""
    pre_tanh = mean + log_std.exp() * noise
    action = torch.tanh(pre_tanh)
    gaussian = -0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
    # log(1 - tanh(x)^2) = 2 (log 2 - x - softplus(-2x)), the stable form.
    jacobian = 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
    return action, (gaussian - jacobian).sum(-1)


class ContrastiveEncoders(nn.Module):
    """IGDF's encoders: phi(s, a) and psi(s'), each an MLP (hidden x 2) -> ``embed_dim``."""

    def __init__(self, obs_dim: int, act_dim: int, embed_dim: int = 64, hidden: int = 256,
                 generators: Generators = None):
        super().__init__()
        self.phi = MLP(obs_dim + act_dim, embed_dim, hidden, 2, None, generators)
        self.psi = MLP(obs_dim, embed_dim, hidden, 2, None, generators)

    def encode_state_action(self, obs: Tensor, act: Tensor) -> Tensor:
        return self.phi(torch.cat([obs, act], dim=-1))

    def encode_next_state(self, next_obs: Tensor) -> Tensor:
        return self.psi(next_obs)


class BehaviorVAE(nn.Module):
    """OTDF's (BCQ/SPOT-style) conditional VAE of the target behaviour policy beta(a|s).

    Encoder q(z|s,a) and decoder a = max_action * tanh(f(s, z)), each 2 x ``hidden`` (750) ReLU;
    latent dimension 2 |A|.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 750, latent_dim: Optional[int] = None,
                 max_action: float = 1.0, generators: Generators = None):
        super().__init__()
        self.latent_dim = latent_dim if latent_dim is not None else 2 * act_dim
        self.max_action = max_action
        self.encoder = MLP(obs_dim + act_dim, 2 * self.latent_dim, hidden, 2, None, generators)
        self.decoder = MLP(obs_dim + self.latent_dim, act_dim, hidden, 2, None, generators)

    def encode(self, obs: Tensor, act: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and clamped log-std of q(z|s,a)."""
        mean, log_std = self.encoder(torch.cat([obs, act], dim=-1)).split(self.latent_dim, dim=-1)
        return mean, log_std.clamp(VAE_LOG_STD_MIN, VAE_LOG_STD_MAX)

    def decode(self, obs: Tensor, z: Tensor) -> Tensor:
        return self.max_action * torch.tanh(self.decoder(torch.cat([obs, z], dim=-1)))

    def forward(self, obs: Tensor, act: Tensor, generator: Optional[torch.Generator] = None,
                noise: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:
        """Reconstruction of ``act`` through a reparameterised latent sample, and q's parameters.

        The standard normal ``noise`` (shaped like the latent) is drawn from ``generator`` unless given.
        """
        mean, log_std = self.encode(obs, act)
        if noise is None:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + log_std.exp() * noise
        return self.decode(obs, z), mean, log_std
