"""Run a dataset suite (:mod:`dvdf.data.suite`) as Ray tasks - the one module of ``dvdf.data``
that imports Ray (inside :func:`run_suite` only, so importing this module stays cheap).

One task per domain trains its SAC behaviour policy; one task per (domain, quality) generates
a dataset and depends on its domain's policy task (Ray starts it once the policy is ready).
Without an address a local Ray instance is started (``address="local"``: never attaches to
another cluster on the host); with one, the suite runs on that cluster - the data directory
and policy cache must then be on storage shared by every node.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

from dvdf.data.suite import SuiteSpec, build_suite_dataset, plan_suite, summarize_suite, train_domain_policy
from dvdf.errors import DvdfError


def _policy_task(spec: SuiteSpec, domain: str) -> str:
    return train_domain_policy(spec, domain)


def _dataset_task(spec: SuiteSpec, domain: str, quality: str, policy_dir: str) -> dict[str, Any]:
    # policy_dir is unused here: passing the policy task's result makes Ray run this task after it.
    del policy_dir
    return build_suite_dataset(spec, domain, quality)


def run_suite(spec: SuiteSpec, address: Optional[str] = None, progress: bool = True) -> dict[str, Any]:
    """Generate every dataset of ``spec``; returns :func:`dvdf.data.suite.summarize_suite`.

    Uses the Ray instance of this process if one is initialised; otherwise starts or joins one
    (``RAY_AUTH_MODE`` defaults to ``disabled`` unless set) and shuts it down afterwards.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from tqdm.auto import tqdm

    # Absolute paths, resolved here: a Ray worker's working directory is not the caller's.
    spec = dataclasses.replace(spec, data_dir=str(spec.resolved_data_dir),
                               policy_cache=str(spec.resolved_policy_cache))
    plan = plan_suite(spec)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=progress)
    try:
        resources = {"num_cpus": spec.cpus_per_task, "num_gpus": 1 if spec.device.startswith("cuda") else 0}
        policy = ray.remote(**resources)(_policy_task)
        dataset = ray.remote(**resources)(_dataset_task)
        policy_refs = {domain: policy.remote(spec, domain) for domain in plan.domains}
        dataset_refs = [dataset.remote(spec, domain, quality, policy_refs[domain])
                        for domain, quality in plan.datasets]
        pending = list(policy_refs.values()) + dataset_refs
        with tqdm(total=len(pending), desc="suite", unit="job", disable=None if progress else True) as bar:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                _get(ray, ready[0])
                bar.update(1)
    finally:
        if started_here:
            ray.shutdown()
    return summarize_suite(spec)


def _get(ray, ref) -> Any:
    """ray.get, with a user error (DvdfError) inside a task re-raised as itself."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, DvdfError):
            raise DvdfError(str(cause)) from None
        raise
