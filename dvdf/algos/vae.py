"""OTDF's behaviour VAE: its loss (negative ELBO), its training on the target data, and the
dataset-constraint term -log beta(a|s) ~= negative ELBO used by the OTDF actor.

As BCQ/SPOT: loss = ||a - decode(s, z)||^2 / |A| + KL_WEIGHT * KL(q(z|s,a) || N(0, I)) / dim z,
z ~ q(z|s,a) reparameterised, KL_WEIGHT = 0.5.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from tqdm.auto import tqdm

from dvdf.algos.optim import make_adam
from dvdf.config import BehaviorVAEConfig
from dvdf.nets import BehaviorVAE, seeded_generators

VAE_KL_WEIGHT = 0.5


def vae_negative_elbo(recon: Tensor, action: Tensor, mean: Tensor, log_std: Tensor,
                      kl_weight: float = VAE_KL_WEIGHT) -> Tensor:
    """Per-sample negative ELBO: mean squared reconstruction error + kl_weight * mean KL per latent."""
    recon_error = (recon - action).square().mean(-1)
    kl = -0.5 * (1.0 + 2.0 * log_std - mean.square() - (2.0 * log_std).exp()).mean(-1)
    return recon_error + kl_weight * kl


def vae_loss(recon: Tensor, action: Tensor, mean: Tensor, log_std: Tensor,
             kl_weight: float = VAE_KL_WEIGHT) -> tuple[Tensor, dict]:
    """Batch mean of :func:`vae_negative_elbo` (batch on the last dimension before features)."""
    loss = vae_negative_elbo(recon, action, mean, log_std, kl_weight).mean(-1)
    return loss, {"vae_loss": loss.detach()}


def behavior_log_prob_penalty(vae: BehaviorVAE, obs: Tensor, action: Tensor,
                              generator: Optional[torch.Generator] = None, noise: Optional[Tensor] = None
                              ) -> Tensor:
    """-log beta(a|s) approximated by the VAE's negative ELBO, per sample.

    The VAE stays frozen (its parameters must have ``requires_grad=False``); gradients flow to
    ``action`` only, which is what the OTDF actor constraint needs. The latent noise is drawn from
    ``generator`` unless given (the compiled whole step draws it outside its graph).
    """
    recon, mean, log_std = vae(obs, action, generator, noise)
    return vae_negative_elbo(recon, action, mean, log_std)


def fit_behavior_vae(target: dict[str, Tensor], cfg: BehaviorVAEConfig, seed: int, device,
                     progress: bool = False) -> BehaviorVAE:
    """Train beta(a|s) on the target transitions: ``cfg.steps`` Adam steps at ``cfg.lr``, each on
    ``cfg.batch_size`` rows.

    Minibatches are drawn with a generator seeded from ``seed``; returns the VAE frozen, in eval mode.
    """
    device = torch.device(device)
    obs, act = target["observations"], target["actions"]
    vae = BehaviorVAE(obs.shape[-1], act.shape[-1], hidden=cfg.hidden,
                      generators=seeded_generators(seed)).to(device)
    optimizer = make_adam(vae.parameters(), cfg.lr)
    gen = torch.Generator(device=device).manual_seed(seed)
    for _ in tqdm(range(cfg.steps), desc="behaviour VAE", disable=not progress, mininterval=1.0):
        idx = torch.randint(obs.shape[0], (cfg.batch_size,), generator=gen, device=device)
        recon, mean, log_std = vae(obs[idx], act[idx], gen)
        loss, _ = vae_loss(recon, act[idx], mean, log_std)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    vae.requires_grad_(False)
    return vae.eval()


def load_behavior_vae(path, cfg: BehaviorVAEConfig, device) -> BehaviorVAE:
    """Rebuild a frozen VAE saved with ``torch.save(vae.state_dict(), path)``.

    The sizes come from the saved weights (obs/act/latent dims) and ``cfg.hidden``.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    act_dim = state["decoder.layers.2.weight"].shape[-1]
    latent_dim = state["encoder.layers.2.weight"].shape[-1] // 2
    obs_dim = state["decoder.layers.0.weight"].shape[-2] - latent_dim
    vae = BehaviorVAE(obs_dim, act_dim, hidden=cfg.hidden, latent_dim=latent_dim)
    vae.load_state_dict(state)
    return vae.to(device).requires_grad_(False).eval()
