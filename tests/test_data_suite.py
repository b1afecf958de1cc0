"""Dataset suites: spec loading, planning, `dvdf data list`, and a tiny run as Ray tasks."""

from __future__ import annotations

import json
import textwrap

import pytest

from dvdf.cli import main as cli_main
from dvdf.data.suite import load_suite_spec, plan_suite
from dvdf.errors import DvdfError

TINY_COLLECT = "{transitions: 200, sac_steps: 100, snapshot_every: 25, eval_episodes: 1, num_envs: 2}"


def write_spec(tmp_path, body: str):
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def test_spec_and_plan(tmp_path):
    path = write_spec(tmp_path, f"""
        data_dir: data
        robots: [hopper, walker2d]
        domains: [original, kinematic]
        qualities: [medium, expert]
        collect: {TINY_COLLECT}
    """)
    spec = load_suite_spec(path)
    assert spec.data_dir == str(tmp_path / "data")  # relative to the YAML file
    plan = plan_suite(spec)
    assert plan.domains == ("hopper", "hopper-kinematic", "walker2d", "walker2d-kinematic")
    assert len(plan.datasets) == 8 and ("walker2d-kinematic", "expert") in plan.datasets
    assert plan.policy_cache == str(tmp_path / "data" / "policies")


@pytest.mark.parametrize("body, message", [
    ("robots: [hopper]\nqualities: [mediocre]\n", "qualities"),
    ("robots: [hopper]\ndomains: [warped]\n", "hopper-warped"),
    ("robots: [hopper]\ncolect: {}\n", "unknown key 'colect'"),
    ("robots: [hopper]\ncollect: {transitions: 0}\n", "collect.transitions"),
    ("domains: [original]\n", "robots"),
])
def test_bad_specs_exit_2(tmp_path, capsys, body, message):
    path = write_spec(tmp_path, body)
    with pytest.raises(DvdfError, match=message):
        load_suite_spec(path)
    assert cli_main(["data", "suite", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(path) in err


def test_dry_run_prints_plan(tmp_path, capsys):
    path = write_spec(tmp_path, f"robots: [hopper]\nqualities: [random]\ncollect: {TINY_COLLECT}\n")
    assert cli_main(["data", "suite", str(path), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["policies"] == ["hopper"] and plan["datasets"] == ["hopper-random.hdf5"]


def test_list_bad_dir(tmp_path, capsys):
    assert cli_main(["data", "list", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err


@pytest.mark.ray
def test_suite_runs_as_ray_tasks(ray_session, tmp_path, capsys):
    from dvdf.data.suite_ray import run_suite

    path = write_spec(tmp_path, f"""
        data_dir: data
        robots: [hopper]
        domains: [original, kinematic]
        qualities: [random, medium-replay]
        collect: {TINY_COLLECT}
    """)
    spec = load_suite_spec(path)
    result = run_suite(spec, progress=False)
    files = sorted(e["file"] for e in result["datasets"])
    assert files == ["hopper-kinematic-medium-replay.hdf5", "hopper-kinematic-random.hdf5",
                     "hopper-medium-replay.hdf5", "hopper-random.hdf5"]
    data_dir = tmp_path / "data"
    policies = [p for p in (data_dir / "policies").iterdir() if p.is_dir()]
    assert len(policies) == 2  # one SAC training per domain, shared by its qualities
    # `dvdf data list` shows the catalogue.
    assert cli_main(["data", "list", str(data_dir), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert sorted(e["file"] for e in listing["datasets"]) == files
    assert all(e["status"] == "ok" for e in listing["datasets"])
    assert {e["domain"] for e in listing["datasets"]} == {"hopper", "hopper-kinematic"}
    assert cli_main(["data", "list", str(data_dir)]) == 0
    assert "hopper-kinematic-random.hdf5" in capsys.readouterr().out
    # A second run finds everything in place (no task trains or writes again).
    mtimes = {p: p.stat().st_mtime_ns for p in data_dir.glob("*.hdf5")}
    run_suite(spec, progress=False)
    assert {p: p.stat().st_mtime_ns for p in data_dir.glob("*.hdf5")} == mtimes


@pytest.mark.parametrize("name, robots", [("d4rl_hopper", ["hopper"]),
                                          ("d4rl_locomotion", ["walker2d", "halfcheetah", "ant"])])
def test_shipped_d4rl_suites_plan(name, robots):
    """The shipped D4RL-recipe suites load and plan: 1M SAC steps, 1M transitions, all five qualities."""
    from pathlib import Path

    from dvdf.config import D4RL_QUALITIES

    spec = load_suite_spec(Path(__file__).resolve().parents[1] / "data_suites" / f"{name}.yaml")
    assert list(spec.robots) == robots and set(spec.qualities) == set(D4RL_QUALITIES)
    assert spec.collect.sac_steps == spec.collect.transitions == 1_000_000
    plan = plan_suite(spec)
    assert len(plan.domains) == 2 * len(robots) and len(plan.datasets) == 5 * len(plan.domains)
