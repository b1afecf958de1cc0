"""Shared pytest fixtures.

Ray tests share one local Ray instance per session (address="local" so a test never joins
another cluster on the host; auth off so no token is written to ~/.ray).
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# One intra-op thread per test process: the tests' tensors are tiny, and on a 2-core machine
# with anything else running, torch's default of one thread per core oversubscribes the CPU
# (spin-waiting threads made a 9 s run take over 2 minutes).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "disable")


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ray_session():
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 object_store_memory=200 * 1024 * 1024)
    yield ray
    ray.shutdown()


TINY_SOURCE = "hopper-kinematic"
TINY_TARGET = "hopper"


def write_tiny_dataset(path, domain, transitions, seed):
    """Rollouts of two fixed behaviour policies (provenance 0 = uniform random, 1 = damped)."""
    import json

    import numpy as np

    from dvdf.data import concatenate, write_dataset
    from dvdf.data.rollout import collect_rollouts
    from dvdf.envs import make_vector_env

    envs = make_vector_env(domain, 4)
    rng = np.random.default_rng(seed)
    low, high = envs.single_action_space.low, envs.single_action_space.high
    uniform = lambda obs: rng.uniform(low, high, size=(obs.shape[0], low.shape[0]))  # noqa: E731
    damped = lambda obs: 0.3 * rng.uniform(low, high, size=(obs.shape[0], low.shape[0]))  # noqa: E731
    parts = [collect_rollouts(envs, act, transitions // 2, seed=seed + label, label=label)
             for label, act in enumerate((uniform, damped))]
    envs.close()
    dataset = concatenate(parts)
    dataset.metadata.update({"domain": domain, "quality": "medium",
                             "provenance_names": json.dumps(["uniform", "damped"])})
    return write_dataset(path, dataset)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    """A data dir with `<domain>-medium.hdf5` for hopper-kinematic (source) and hopper (target)."""
    root = tmp_path_factory.mktemp("tiny_data")
    write_tiny_dataset(root / f"{TINY_SOURCE}-medium.hdf5", TINY_SOURCE, 3000, seed=1)
    write_tiny_dataset(root / f"{TINY_TARGET}-medium.hdf5", TINY_TARGET, 3000, seed=2)
    return root


def tiny_experiment_overrides(data_dir, cache_dir, method="dvdf-igdf", steps=200):
    """`--set` style overrides for a run of a few seconds on the tiny datasets."""
    return [
        f"data.data_dir={data_dir}", f"cache_dir={cache_dir}", f"filter.method={method}",
        f"data.source_domain={TINY_SOURCE}", f"data.target_domain={TINY_TARGET}", "data.quality=medium",
        "data.target_fraction=0.5", f"iql.steps={steps}", f"eval.every={steps // 2}", "eval.episodes=2",
        "value.steps=200", "scorer.contrastive.steps=100", "scorer.vae.steps=100",
        "scorer.ot.chunk=1000", "iql.hidden=64", "value.hidden=64", "scorer.contrastive.hidden=64",
        "scorer.vae.hidden=64",
        "device=cpu",
    ]


# The experiment base of the tiny Ray Tune sweeps (test_tune_sweep, test_tune_trackers).
TINY_SWEEP_BASE = {
    "device": "cpu",
    "data": {"target_fraction": 0.5},
    "value": {"steps": 100, "batch_size": 32, "hidden": 32},
    "scorer": {"contrastive": {"steps": 100, "batch_size": 32, "hidden": 32, "embed_dim": 16}},
    "iql": {"steps": 200, "batch_size": 32, "hidden": 32},
    "eval": {"every": 100, "episodes": 1},
}


def write_random_medium_datasets(data_dir, domains, transitions):
    """Uniform-random-policy ``<domain>-medium.hdf5`` files of ``transitions`` rows in ``data_dir``."""
    import numpy as np

    from dvdf.data import write_dataset
    from dvdf.data.rollout import collect_rollouts
    from dvdf.envs import get_domain, make_vector_env

    for domain in domains:
        rng = np.random.default_rng(0)
        act_dim = get_domain(domain).act_dim
        envs = make_vector_env(domain, 2)
        data = collect_rollouts(envs, lambda obs, rng=rng, act_dim=act_dim: rng.uniform(-1, 1, (obs.shape[0], act_dim)),
                                transitions, seed=0)
        envs.close()
        write_dataset(data_dir / f"{domain}-medium.hdf5", data, {"domain": domain, "quality": "medium"})
