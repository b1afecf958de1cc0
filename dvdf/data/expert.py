"""Which SAC snapshot is the ``expert`` behaviour policy: the final actor, or the best one.

``final`` is D4RL's literal choice: the actor at the end of SAC training. It assumes SAC has
settled there, which SAC on hopper does not do on a fixed budget: dvdf's 500k-step hopper run
evaluated at 3,100-3,200 between 170k and 240k steps and at 1,751 on its last snapshot (the
curve is in docs/evidence/hopper_sac_curve.jsonl), so under ``final`` the expert's quality is
whatever the last 10k steps happened to leave.

``best`` (the default) picks the snapshot that is best on a fresh evaluation:

1. candidates: the :data:`EXPERT_CANDIDATES` snapshots (step 0 excluded) with the highest
   training-time return of the stochastic policy - the policy that generates the data;
2. each candidate is evaluated again on ``episodes`` new episodes (other start states and
   action noise than training's evaluations);
3. the expert is the candidate with the highest re-evaluated stochastic return; its recorded
   returns are the re-evaluated ones.

Step 2 is what makes the choice honest: the maximum of ~50 training-time 5-episode estimates is
biased upwards (it picks the luckiest estimate as much as the best policy); an independent
evaluation of a handful of candidates is not (or barely, with 5 candidates).

The choice is computed once per (SAC run, rule, episodes) and stored in the run directory as
``expert-best-<episodes>ep.json``; a packed policy directory carries it along.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch

from dvdf.atomic import atomic_write_text
from dvdf.cache import file_lock
from dvdf.config import EXPERT_RULES
from dvdf.data.behaviour import SACResult, load_actor
from dvdf.data.rollout import deterministic_actor, stochastic_actor
from dvdf.errors import DvdfError

EXPERT_CANDIDATES = 5
# Training-time evaluations use start-state seed 10_000 + seed (dvdf.data.behaviour): another stream.
SELECTION_SEED_OFFSET = 20_000


def selection_file(run_dir: Path, episodes: int) -> Path:
    return Path(run_dir) / f"expert-best-{episodes}ep.json"


def select_expert(policy: SACResult, rule: str, episodes: int, seed: int, device: str = "cpu") -> dict[str, Any]:
    """The expert snapshot of ``policy`` under ``rule`` (see the module docstring).

    Returns a snapshot dict (``step``, ``path``, ``return_stochastic``, ``return_deterministic``);
    under ``best`` its returns are the re-evaluation's and ``selection`` lists every candidate.
    """
    if rule not in EXPERT_RULES:
        raise DvdfError(f"collect.expert must be one of {', '.join(EXPERT_RULES)}, got {rule!r}")
    if rule == "final":
        return policy.expert
    path = selection_file(policy.run_dir, episodes)
    with file_lock(path.parent / f".{path.name}.lock"):
        if not path.exists():
            choice = _reevaluate_candidates(policy, episodes, seed, device)
            atomic_write_text(path, json.dumps(choice, indent=2) + "\n")
    return json.loads(path.read_text())


def choose_expert(snapshots: list[dict[str, Any]],
                  evaluate: Callable[[dict[str, Any]], tuple[float, float]]) -> dict[str, Any]:
    """Rule ``best`` on ``snapshots`` (a SAC run's, step 0 first), ``evaluate(snapshot)`` giving the
    fresh (stochastic, deterministic) returns of a candidate. Returns the chosen snapshot with the
    fresh returns, and under ``selection`` every candidate's training-time and fresh returns."""
    trained = snapshots[1:]
    if not trained:
        raise DvdfError("no SAC snapshot after the random policy to choose an expert from")
    # Ties in training-time return go to the later snapshot (more training behind it).
    candidates = sorted(trained, key=lambda s: (s["return_stochastic"], s["step"]), reverse=True)
    rows = []
    for snap in candidates[:EXPERT_CANDIDATES]:
        stochastic, deterministic = evaluate(snap)
        rows.append({"step": snap["step"], "path": snap["path"],
                     "training_return_stochastic": snap["return_stochastic"],
                     "training_return_deterministic": snap["return_deterministic"],
                     "return_stochastic": float(stochastic), "return_deterministic": float(deterministic)})
    best = max(rows, key=lambda r: (r["return_stochastic"], r["step"]))
    return {"step": best["step"], "path": best["path"], "return_stochastic": best["return_stochastic"],
            "return_deterministic": best["return_deterministic"],
            "selection": {"rule": "best", "candidates": rows}}


def _reevaluate_candidates(policy: SACResult, episodes: int, seed: int, device: str) -> dict[str, Any]:
    from dvdf.evaluation import Evaluator

    domain = json.loads((policy.run_dir / "settings.json").read_text())["domain"]
    evaluator = Evaluator(domain, episodes)
    eval_seed = SELECTION_SEED_OFFSET + seed

    def evaluate(snap: dict[str, Any]) -> tuple[float, float]:
        actor = load_actor(policy.run_dir, snap, device)
        noise = torch.Generator(device=device).manual_seed(eval_seed * 1_000_003 + snap["step"])
        stochastic = evaluator(stochastic_actor(actor, noise), seed=eval_seed).returns.mean()
        deterministic = evaluator(deterministic_actor(actor, device), seed=eval_seed).returns.mean()
        return float(stochastic), float(deterministic)

    try:
        choice = choose_expert(policy.snapshots, evaluate)
    finally:
        evaluator.close()
    choice["selection"].update(episodes=episodes, seed=eval_seed)
    return choice
