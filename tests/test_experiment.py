"""run_experiment end to end on tiny real datasets: every method, caching, determinism, resume."""

import json
import re
import subprocess
import sys
import threading

import pytest
from conftest import tiny_experiment_overrides

from dvdf.config import METHODS, load_experiment_config
from dvdf.errors import DvdfError
from dvdf.experiment import run_experiment


def config_for(tiny_data_dir, cache_dir, method="dvdf-igdf", extra=()):
    return load_experiment_config(None, tiny_experiment_overrides(tiny_data_dir, cache_dir, method) + list(extra))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_evaluates(method, tiny_data_dir, tmp_path):
    reports = list(run_experiment(config_for(tiny_data_dir, tmp_path / "cache", method)))
    assert [r.step for r in reports] == [100, 200]
    assert reports[-1].done and not reports[0].done
    for report in reports:
        m = report.metrics
        assert {"normalized_score", "return_mean", "best_normalized_score", "q_loss", "v_loss"} <= set(m)
        assert all(v == v and abs(v) != float("inf") for v in m.values()), m
    if method != "iql-target":
        assert 0 < reports[-1].metrics["kept_fraction"] <= 1
    else:  # never samples the source: no filter diagnostics at all
        assert not [k for k in reports[-1].metrics if k.startswith("filter/")]


def test_stages_are_built_once_and_never_for_lambda_or_xi(tiny_data_dir, tmp_path):
    cache = tmp_path / "cache"
    list(run_experiment(config_for(tiny_data_dir, cache, extra=["filter.tradeoff=0.7"])))
    built = sorted(p.relative_to(cache) for p in cache.glob("*/*") if p.is_dir())
    assert {p.parts[0] for p in built} == {"value", "contrastive"}
    for changed in (["filter.tradeoff=0.2"], ["filter.keep_ratio=0.9"], ["filter.method=igdf"]):
        list(run_experiment(config_for(tiny_data_dir, cache, extra=changed)))
    assert sorted(p.relative_to(cache) for p in cache.glob("*/*") if p.is_dir()) == built
    # ... but a new seed or scorer setting does build new artifacts
    list(run_experiment(config_for(tiny_data_dir, cache, extra=["seed=5"])))
    assert len([p for p in cache.glob("*/*") if p.is_dir()]) == len(built) + 2


def test_same_seed_same_numbers(tiny_data_dir, tmp_path):
    config = config_for(tiny_data_dir, tmp_path / "cache")
    first = [r.metrics for r in run_experiment(config)]
    second = [r.metrics for r in run_experiment(config)]
    drop = {"train_steps_per_s"}
    assert [{k: v for k, v in m.items() if k not in drop} for m in first] == \
           [{k: v for k, v in m.items() if k not in drop} for m in second]


def test_resume_continues_bit_for_bit(tiny_data_dir, tmp_path):
    config = config_for(tiny_data_dir, tmp_path / "cache", extra=["iql.steps=300", "eval.every=100"])
    uninterrupted = [r.metrics for r in run_experiment(config)]
    run = run_experiment(config)
    next(run)
    second = next(run)
    second.save(tmp_path / "ckpt")
    run.close()  # the "crash"
    resumed = [r.metrics for r in run_experiment(config, resume=tmp_path / "ckpt")]
    assert len(resumed) == 1
    strip = lambda m: {k: v for k, v in m.items() if k != "train_steps_per_s"}  # noqa: E731
    assert strip(resumed[0]) == strip(uninterrupted[-1])


def test_filter_diagnostics_per_provenance_label(tiny_data_dir, tmp_path):
    config = config_for(tiny_data_dir, tmp_path / "cache")
    out = tmp_path / "run"
    list(run_experiment(config, out_dir=out))
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = lines[-1]
    shares = {k: v for k, v in last.items() if k.startswith("filter/kept_share/")}
    assert set(shares) == {"filter/kept_share/uniform", "filter/kept_share/damped"}
    assert sum(shares.values()) == pytest.approx(1.0)
    assert "filter/kept_dyn_score" in last and "filter/dropped_dyn_score" in last
    # the filter keeps the better-scored half: kept mean score >= dropped mean score
    assert last["filter/kept_dyn_score"] >= last["filter/dropped_dyn_score"]
    assert last["q_bound_exceeded"] == 0.0        # a healthy run stays far below eval.q_bound
    assert list((out / "tb").glob("events.out.tfevents.*"))


def _close(batched: dict, single: dict, rel=1e-4, abs_=1e-5):
    """Float-rounding agreement (bmm vs mm): relative for most metrics, absolute near zero."""
    for key, value in single.items():
        if key == "train_steps_per_s":
            continue
        assert batched[key] == pytest.approx(value, rel=rel, abs=abs_), key


def test_batched_seeds_equal_single_runs(tiny_data_dir, tmp_path):
    """Members of one batched model are the single runs of their seeds (up to float rounding)."""
    config = config_for(tiny_data_dir, tmp_path / "cache", extra=["eval.episodes=3"])
    out = tmp_path / "batched"
    batched = list(run_experiment(config, out_dir=out, seeds=[7, 8]))
    assert [r.step for r in batched] == [100, 200] and batched[-1].done
    for seed in (7, 8):
        single = list(run_experiment(config.replace(seed=seed)))
        for b, s in zip(batched, single):
            _close(b.members[seed], s.metrics)
        lines = [json.loads(x) for x in (out / f"seed_{seed}" / "metrics.jsonl").read_text().splitlines()]
        assert [line["step"] for line in lines] == [100, 200]
        assert f"seed: {seed}" in (out / f"seed_{seed}" / "config.yaml").read_text()
    last = batched[-1].metrics
    scores = [batched[-1].members[s]["normalized_score"] for s in (7, 8)]
    assert last["normalized_score"] == pytest.approx(sum(scores) / 2)
    assert last["normalized_score_seed7"] == scores[0]
    assert "filter/kept_share/uniform" in batched[-1].members[7]


def test_batched_seeds_resume_bit_for_bit(tiny_data_dir, tmp_path):
    config = config_for(tiny_data_dir, tmp_path / "cache", extra=["iql.steps=300", "eval.every=100"])
    uninterrupted = [r.members for r in run_experiment(config, seeds=[1, 2])]
    run = run_experiment(config, seeds=[1, 2])
    next(run)
    next(run).save(tmp_path / "ckpt")
    run.close()
    resumed = [r.members for r in run_experiment(config, resume=tmp_path / "ckpt", seeds=[1, 2])]
    strip = lambda m: {k: v for k, v in m.items() if k != "train_steps_per_s"}  # noqa: E731
    assert {s: strip(m) for s, m in resumed[0].items()} == {s: strip(m) for s, m in uninterrupted[-1].items()}
    with pytest.raises(DvdfError, match="trains seeds"):
        next(run_experiment(config, resume=tmp_path / "ckpt", seeds=[1, 3]))


def test_compiled_whole_step_runs_like_eager_and_resumes_exactly(tiny_data_dir, tmp_path):
    """iql.compile: step (batched seeds): the eager run's numbers within float tolerance; a resume
    in the same mode is bit-for-bit, and its checkpoint resumes eagerly too."""
    config = config_for(tiny_data_dir, tmp_path / "cache", extra=["iql.steps=200", "eval.episodes=3"])
    compiled = config_for(tiny_data_dir, tmp_path / "cache",
                          extra=["iql.steps=200", "eval.episodes=3", "iql.compile=step"])
    eager_run = [r.members for r in run_experiment(config, seeds=[1, 2])]
    run = run_experiment(compiled, seeds=[1, 2])
    first = next(run)
    first.save(tmp_path / "ckpt")
    uninterrupted = [first.members, next(run).members]
    run.close()
    for step_members, eager_members in zip(uninterrupted, eager_run):
        for seed in (1, 2):
            _close(step_members[seed], eager_members[seed])
    strip = lambda m: {k: v for k, v in m.items() if k != "train_steps_per_s"}  # noqa: E731
    resumed = [r.members for r in run_experiment(compiled, resume=tmp_path / "ckpt", seeds=[1, 2])]
    assert {s: strip(m) for s, m in resumed[0].items()} == {s: strip(m) for s, m in uninterrupted[-1].items()}
    resumed_eagerly = [r.members for r in run_experiment(config, resume=tmp_path / "ckpt", seeds=[1, 2])]
    for seed in (1, 2):
        _close(resumed_eagerly[0][seed], eager_run[-1][seed])


def test_overlapped_evaluation_reports_the_same_numbers_one_interval_late(tiny_data_dir, tmp_path):
    """eval.overlap: evaluation of a policy copy on a background thread while training goes on.
    Same metrics and files as evaluating in line; a checkpoint is its report's step's; a consumer
    that stops early leaves no evaluation running."""
    extra = ["iql.steps=300", "eval.every=100", "eval.episodes=3"]
    config = config_for(tiny_data_dir, tmp_path / "cache", extra=extra)
    overlapped = config_for(tiny_data_dir, tmp_path / "cache", extra=extra + ["eval.overlap=true"])
    strip = lambda m: {k: v for k, v in m.items() if k != "train_steps_per_s"}  # noqa: E731
    inline = [strip(r.metrics) for r in run_experiment(config, out_dir=tmp_path / "inline")]
    reports = list(run_experiment(overlapped, out_dir=tmp_path / "overlap"))
    assert [r.step for r in reports] == [100, 200, 300] and [r.done for r in reports] == [False, False, True]
    assert [strip(r.metrics) for r in reports] == inline
    lines = [json.loads(x) for x in (tmp_path / "overlap" / "metrics.jsonl").read_text().splitlines()]
    assert [strip(line) for line in lines] == inline

    run = run_experiment(overlapped)
    first = next(run)          # yielded once training reached step 200
    first.save(tmp_path / "ckpt")
    run.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("dvdf-eval-overlap")]
    resumed = [strip(r.metrics) for r in run_experiment(overlapped, resume=tmp_path / "ckpt")]
    assert resumed == inline[1:]

    batched = [r.members for r in run_experiment(overlapped, seeds=[1, 2])]
    for b, i in zip(batched, run_experiment(config, seeds=[1, 2])):
        assert {s: strip(m) for s, m in b.items()} == {s: strip(m) for s, m in i.members.items()}


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dvdf.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_train_cli_writes_results_and_resumes(tiny_data_dir, tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("name: tiny\n")
    sets = sum((["--set", o] for o in tiny_experiment_overrides(tiny_data_dir, tmp_path / "cache")), [])
    out = tmp_path / "run"
    done = run_cli("train", str(cfg), *sets, "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 200 and "best_normalized_score" in summary
    assert (out / "config.yaml").is_file() and (out / "checkpoint" / "experiment_state.pt").is_file()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    again = run_cli("train", str(cfg), *sets, "--out", str(out))
    assert again.returncode == 2 and again.stderr.startswith("error:") and "--resume" in again.stderr
    resumed = run_cli("train", str(cfg), *sets, "--out", str(out), "--resume")
    assert resumed.returncode == 0 and "already complete" in resumed.stderr


def test_train_cli_batched_seeds(tiny_data_dir, tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("name: tiny\n")
    sets = sum((["--set", o] for o in tiny_experiment_overrides(tiny_data_dir, tmp_path / "cache")), [])
    out = tmp_path / "run"
    done = run_cli("train", str(cfg), *sets, "--out", str(out), "--no-progress", "--seeds", "3,4")
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["seeds"]) == {"3", "4"} and "seed" not in summary
    for seed in (3, 4):
        assert len((out / f"seed_{seed}" / "metrics.jsonl").read_text().splitlines()) == 2
    bad = run_cli("train", str(cfg), "--seeds", "3,3")
    assert bad.returncode == 2 and "distinct seeds" in bad.stderr


def test_train_cli_stops_a_diverging_run_with_one_line_exit_2(tiny_data_dir, tmp_path):
    """lr = 1000 blows the update up within a few steps: the run stops at the next evaluation with
    'error: run diverged at step N: <quantity>', exit 2, summary.json 'diverged', the last metrics
    line flagged, and the checkpoint left is the last good evaluation's."""
    import torch

    cfg = tmp_path / "exp.yaml"
    cfg.write_text("name: tiny\n")
    sets = sum((["--set", o] for o in tiny_experiment_overrides(tiny_data_dir, tmp_path / "cache", steps=20)), [])
    out = tmp_path / "run"
    done = run_cli("train", str(cfg), *sets, "--set", "iql.lr=1000", "--set", "iql.actor_lr=1000",
                   "--set", "eval.every=1", "--set", "eval.episodes=1", "--out", str(out), "--no-progress")
    assert done.returncode == 2, done.stderr
    last_line = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"error: run diverged at step (\d+): \S+ (state )?is (nan|inf)", last_line), last_line
    step = int(re.search(r"step (\d+)", last_line).group(1))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_step"] == step
    assert last_line.endswith(summary["diverged_quantity"]) and summary["final_normalized_score"] is None
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, step + 1))
    assert lines[-1]["diverged"] == 1.0 and "diverged" not in lines[0]
    assert step < 20                                   # it did not train on to the end
    if step > 1:
        state = torch.load(out / "checkpoint" / "experiment_state.pt", weights_only=False)
        assert state["step"] == step - 1               # the last good evaluation's checkpoint stays
    else:
        assert not (out / "checkpoint").exists()


def test_exploding_values_are_flagged_and_warned(tiny_data_dir, tmp_path, caplog):
    config = config_for(tiny_data_dir, tmp_path / "cache", extra=["eval.q_bound=1e-3"])
    with caplog.at_level("WARNING", logger="dvdf.divergence"):
        reports = list(run_experiment(config))
    assert [r.step for r in reports] == [100, 200] and reports[-1].done and reports[-1].diverged is None
    assert all(r.metrics["q_bound_exceeded"] == 1.0 for r in reports)
    warnings = [r.getMessage() for r in caplog.records if "above eval.q_bound" in r.getMessage()]
    assert len(warnings) == 2 and warnings[0].startswith("warning: step 100")


@pytest.mark.parametrize("override, message", [
    ("filter.keep_ratio=0.005", "filter.keep_ratio (xi) 0.005 keeps no row of a source batch of 128 (iql.batch_size); "
                                "the smallest valid xi is 1/128 = 0.0078125"),
    ("filter.tradeoff=1.7", "filter.tradeoff (lambda) must be in [0, 1], got 1.7"),
    ("data.source_domain=hopper-wobbly", "hopper-wobbly"),
    ("iql.compile=true", "'iql.compile' must be one of 'auto', 'off', 'losses', 'step'"),
])
def test_train_cli_bad_input_is_one_line_exit_2(tmp_path, override, message):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("data:\n  data_dir: " + str(tmp_path) + "\n")
    done = run_cli("train", str(cfg), "--set", override, "--out", str(tmp_path / "run"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error:") and message in done.stderr
    assert not (tmp_path / "run" / "summary.json").exists()


def test_bench_cli_reports_the_train_step_beside_the_authors_members_and_evaluation():
    from dvdf.algos.compile_mode import resolve_compile_mode
    from dvdf.config import IQLConfig

    proc = run_cli("bench", "--json", "--threads", "1", "--steps", "3", "--warmup", "1", "--repeats", "1",
                   "--members", "1", "2", "--no-simulation", "--train-modes", "off")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    train = result["train"]["1"]
    assert set(train["steps_per_s"]) == {"eager", "authors"} and min(train["steps_per_s"].values()) > 0
    assert train["vs_authors_per_s"]["eager"] == pytest.approx(
        train["steps_per_s"]["eager"] / train["steps_per_s"]["authors"], rel=0.05)
    assert train["default"] == {"off": "eager", "step": "compiled_step"}[resolve_compile_mode(IQLConfig(), "cpu")[0]]
    assert set(result["members"]["1"]) == {"1", "2"} and result["members"]["1"]["2"]["eager"]["steps_per_s"] > 0
    evaluation = result["evaluation"]["1"]
    assert evaluation["env_steps"] == 10_000 and evaluation["evaluator_s"] > 0
    bad = run_cli("bench", "--members", "0")
    assert bad.returncode == 2 and "--members" in bad.stderr


def test_bench_timer_keeps_each_steps_fastest_round_and_interleaves_rounds():
    """With a scripted clock the rates are exact: warm-up calls are not timed, each step's fastest
    round counts, and the rounds of different steps alternate."""
    from dvdf.bench import _time_steps

    now = [0.0]
    calls: list[str] = []
    costs = {"a": iter([9.0] * 2 + [0.02] * 4 + [0.01] * 4 + [0.03] * 4),
             "b": iter([9.0] * 2 + [0.05] * 4 + [0.04] * 4 + [0.05] * 4)}

    def step(name):
        def run():
            calls.append(name)
            now[0] += next(costs[name])
        return run

    rates = _time_steps({"a": step("a"), "b": step("b")}, steps=4, warmup=2, repeats=3, sync=lambda: None,
                        clock=lambda: now[0], cpu_clock=lambda: now[0])
    assert rates["a"] == pytest.approx((100.0, 100.0)) and rates["b"] == pytest.approx((25.0, 25.0))
    assert calls == ["a"] * 2 + ["b"] * 2 + (["a"] * 4 + ["b"] * 4) * 3


def test_bench_times_the_experiment_step_compiled_and_eager_alike():
    """The bench's compiled whole step is the experiment's (make_train_step) and computes what its
    eager step computes: K=2 members from the same pools end in the same state, members apart."""
    import torch

    from dvdf.bench import POOL, _random_transitions, train_step_for
    from dvdf.data import TransitionBuffer

    gen = torch.Generator().manual_seed(0)
    pools = (TransitionBuffer(_random_transitions(POOL, "cpu", gen)), TransitionBuffer(_random_transitions(POOL, "cpu", gen)))
    (eager, eager_agent), (compiled, compiled_agent) = (train_step_for(mode, "cpu", pools, members=2)
                                                        for mode in ("off", "step"))
    before = compiled_agent.policy.net.layers[0].weight.detach().clone()
    for _ in range(3):
        eager()
        compiled()
    assert (compiled_agent.compile_mode, compiled_agent.step, eager_agent.compile_mode) == ("step", 3, "off")
    for mine, theirs in zip(compiled_agent.state.tensors(), eager_agent.state.tensors()):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)
    after = compiled_agent.policy.net.layers[0].weight.detach()
    assert not torch.equal(after, before) and not torch.allclose(after[0], after[1])


def test_gpu_utilization_sampler_averages_reads_and_reports_a_failing_read():
    import itertools
    import time

    from dvdf.bench import UtilizationSampler

    readings = itertools.cycle([40.0, 60.0])
    with UtilizationSampler(lambda: next(readings), interval=0.005) as sampler:
        time.sleep(0.1)
    assert sampler.error is None and 40.0 <= sampler.mean <= 60.0

    def no_nvml():
        raise ModuleNotFoundError("pynvml does not seem to be installed")

    with UtilizationSampler(no_nvml, interval=0.005) as failing:
        time.sleep(0.05)
    assert failing.mean is None and "pynvml" in failing.error
