"""The on-disk layout of dvdf's results: file names, metric keys, trial and run statuses.

Everything that writes or reads an experiment directory (``dvdf train``, the Ray Tune trainable and
runner, ``dvdf sweep --results-only``, ``dvdf report``) takes its names from here, so a writer and a
reader can never disagree about a file name, a metric key or what a status word means. No Ray import.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------------- file names
RUN_CONFIG = "config.yaml"          # the resolved ExperimentConfig of one run (or member)
RUN_METRICS = "metrics.jsonl"       # one JSON object per evaluation, sorted by step
RUN_SUMMARY = "summary.json"        # written when a run ends (finished or diverged)
RUN_TENSORBOARD = "tb"              # TensorBoard event files of one run
RUN_CHECKPOINT_DIR = "checkpoint"   # dvdf train's latest checkpoint
SWEEP_FILE = "sweep.yaml"           # the sweep as run, in the sweep's experiment directory


def member_dir(seed: int) -> str:
    """Where member ``seed`` of a batched run (or a trial's seed) writes its files."""
    return f"seed_{seed}"


# --------------------------------------------------------------------------------------- metric keys
STEP = "step"
SCORE = "normalized_score"               # D4RL normalized score, 0-100 scale
BEST_SCORE = "best_normalized_score"     # best evaluation so far (optimistic: best-of-run)
FINISHED_METRIC = "finished"             # trainable metric: 1.0 on the report after which all seeds are done
DIVERGED_METRIC = "diverged"             # trainable metric: 1.0 when the run stopped on a non-finite value

# ------------------------------------------------------------------------------------------ statuses
# One vocabulary for a run or a trial, from the most to the least complete:
FINISHED = "finished"   # trained every step
DIVERGED = "diverged"   # stopped early because a loss or a parameter became non-finite (not retried)
PARTIAL = "partial"     # has evaluations but did not (yet) reach its last step
FAILED = "failed"       # errored: a trial with Ray's error.txt that did not finish (dvdf.trials)
PENDING = "pending"     # known (e.g. from the sweep definition) but has not reported anything
STATUSES = (FINISHED, DIVERGED, PARTIAL, FAILED, PENDING)

# ------------------------------------------------------------------------ checkpoints, divergence watch
CHECKPOINT_FILE = "experiment_state.pt"   # one run's (or a batched run's) checkpoint, in its directory
CHECKPOINT_MEMBERS_DIR = "members"        # a trial checkpoint's batched-seeds run (beside seed_<N>/)
VALUE_BOUND_METRIC = "q_bound_exceeded"   # 1.0 when |Q| or |V| of an interval passed eval.q_bound

# ------------------------------------------------------------------------- trial files and tables
TRIAL_PARAMS = "params.json"        # Ray Tune: the trial's config, written when the trial starts
TRIAL_RESULT = "result.json"        # Ray Tune: one JSON object per report of the trial
TRIAL_ERROR = "error.txt"           # Ray Tune: written when the trial raised
RESULTS_TABLE = "results.csv"       # dvdf sweep: per study, the best and the default trial
TRIALS_TABLE = "trials.csv"         # dvdf sweep: per trial, status and scores
OPTUNA_DB = "optuna.db"             # the sweep's Optuna studies (SQLite), in its experiment directory
SCORE_STD = f"{SCORE}_std"          # trainable metric: std of the normalized score over the trial's seeds
SUMMARY_STATUS = "status"           # summary.json: FINISHED or DIVERGED
SUMMARY_DIVERGED_STEP = "diverged_step"          # summary.json of a diverged run: the step it stopped at
SUMMARY_DIVERGED_QUANTITY = "diverged_quantity"  # summary.json of a diverged run: e.g. "q_loss is nan"


def seed_score_key(seed: int) -> str:
    """Trainable metric: the normalized score of one of the trial's seeds."""
    return f"{SCORE}_seed{seed}"
