"""Sweep files: parsing, validation errors, group expansion (no Ray started)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from dvdf.cli import main
from dvdf.errors import DvdfError
from dvdf.schema import to_dict
from dvdf.tune.prepare import check_datasets, required_datasets, stage_jobs
from dvdf.tune.spec import grid_points, load_sweep, searched_params, study_seed, sweep_from_dict, trial_config

CONFIGS = Path(__file__).resolve().parents[1] / "tune_configs"

MINIMAL = {
    "groups": [{"robots": ["hopper"], "shifts": ["kinematic"], "qualities": ["medium"]}],
    "search": {"mode": "optuna", "num_samples": 3},
}


def sweep_of(**changes):
    raw = yaml.safe_load(yaml.safe_dump(MINIMAL))
    raw.update(changes)
    return sweep_from_dict(raw, source="test.yaml")


# --- the shipped sweep files ---------------------------------------------------------------
@pytest.mark.parametrize("name, groups, methods, trials_per_study, seeds", [
    ("quickstart", 2, 1, 4, 2),
    ("paper_kinematic", 20, 5, 1, 5),
    ("paper_morph", 20, 5, 1, 5),
    ("low_data_5k", 40, 5, 1, 5),
    ("sensitivity", 4, 1, 30, 3),
    ("search", 40, 2, 16, 2),
    ("evidence_hopper", 3, 5, 1, 5),
])
def test_shipped_configs_parse_and_validate(name, groups, methods, trials_per_study, seeds):
    sweep = load_sweep(CONFIGS / f"{name}.yaml")
    assert sweep.name == name
    assert len(sweep.groups) == groups
    assert len(sweep.studies) == groups * methods
    assert {s.num_trials for s in sweep.studies if s.searched} <= {trials_per_study}
    assert len(sweep.spec.seeds) == seeds


def test_paper_configs_follow_the_protocol():
    for name, shift in (("paper_kinematic", "kinematic"), ("paper_morph", "morph")):
        sweep = load_sweep(CONFIGS / f"{name}.yaml")
        assert {g.robot for g in sweep.groups} == {"hopper", "halfcheetah", "walker2d", "ant"}
        assert {g.quality for g in sweep.groups} == {"random", "medium", "medium-replay", "medium-expert", "expert"}
        assert {g.shift for g in sweep.groups} == {shift}
        assert set(sweep.spec.methods) == {"iql-mix", "igdf", "dvdf-igdf", "otdf", "dvdf-otdf"}
        assert sweep.spec.seeds == (100, 200, 300, 400, 500)
        assert sweep.spec.base.iql.steps == 1_000_000
        otdf = sweep.study(f"hopper-{shift}-expert.otdf")
        assert otdf.fixed["keep_ratio"] == 0.8
    low = load_sweep(CONFIGS / "low_data_5k.yaml")
    config = low.experiment_config(low.studies[0], 100, 0.7, 0.5)
    assert config.data.target_transitions == 5000


def test_evidence_config_is_the_issue_protocol():
    """Paper defaults fixed (not tuned), 5 seeds, >= 100k steps, 5,000 target transitions."""
    sweep = load_sweep(CONFIGS / "evidence_hopper.yaml")
    assert sweep.spec.search.mode == "fixed"
    assert {g.quality for g in sweep.groups} == {"medium-replay", "medium-expert", "random-expert"}
    assert set(sweep.spec.methods) == {"iql-target", "iql-mix", "igdf", "dvdf-igdf", "dvdf-iql-adv"}
    assert len(sweep.spec.seeds) == 5 and sweep.spec.base.iql.steps >= 100_000
    config = sweep.experiment_config(sweep.study("hopper-kinematic-medium-expert-5000tr.dvdf-igdf"), 100, 0.7, 0.5)
    assert (config.filter.tradeoff, config.filter.keep_ratio) == (0.7, 0.5)
    assert config.data.target_transitions == 5000
    assert (config.data.source_domain, config.data.target_domain) == ("hopper-kinematic", "hopper")


def test_quickstart_is_an_optuna_search_of_at_least_8_trials_in_2_groups():
    sweep = load_sweep(CONFIGS / "quickstart.yaml")
    assert sweep.spec.search.mode == "optuna"
    assert len(sweep.groups) == 2 and sweep.num_trials >= 8
    assert {g.robot for g in sweep.groups} == {"hopper"}
    assert len({d for g in sweep.groups for d in (g.source_domain, g.target_domain)}) == 2


# --- expansion -------------------------------------------------------------------------------
def test_groups_are_the_cartesian_product_with_dvdf_roles():
    sweep = sweep_of(groups=[{"robots": ["walker2d"], "shifts": ["kinematic", "walker2d-morph"],
                              "qualities": ["medium", "expert"], "target": [{"fraction": 0.1}, {"transitions": 5000}]},
                             {"robots": ["hopper", "walker2d"], "shifts": ["kinematic-footjnt-hard"], "qualities": ["random"]}])
    names = [g.name for g in sweep.groups]
    assert len(names) == 2 * 2 * 2 + 2 == len(set(names))
    assert "hopper-kinematic-footjnt-hard-random" in names and "walker2d-kinematic-medium-frac0.1" in names
    group = next(g for g in sweep.groups if g.name == "walker2d-morph-expert-5000tr")
    assert (group.source_domain, group.target_domain, group.quality) == ("walker2d-morph", "walker2d", "expert")
    assert group.target.transitions == 5000


def test_unknown_full_domain_for_other_robot_is_rejected():
    with pytest.raises(DvdfError, match=r"groups\[0\]\.shifts"):
        sweep_of(groups=[{"robots": ["hopper"], "shifts": ["walker2d-morph"], "qualities": ["medium"]}])


def test_source_original_swaps_the_roles():
    sweep = sweep_of(groups=[{"robots": ["ant"], "shifts": ["gravity-0.5"], "qualities": ["medium"],
                              "source": "original"}])
    (group,) = sweep.groups
    assert (group.source_domain, group.target_domain) == ("ant", "ant-gravity-0.5")
    assert group.name.endswith("-rev")


def test_experiment_config_of_a_trial():
    sweep = sweep_of(groups=[{"robots": ["hopper"], "shifts": ["morph"], "qualities": ["expert"],
                              "target": [{"transitions": 5000}]}],
                     base={"filter": {"method": "igdf"}, "data": {"target_fraction": 0.2}})
    config = sweep.experiment_config(sweep.studies[0], 300, 0.25, 0.75)
    assert config.seed == 300
    assert (config.data.source_domain, config.data.target_domain, config.data.quality) == ("hopper-morph", "hopper", "expert")
    assert config.data.target_transitions == 5000
    assert (config.filter.method, config.filter.tradeoff, config.filter.keep_ratio) == ("dvdf-igdf", 0.25, 0.75)


def test_searched_parameters_depend_on_the_method():
    assert searched_params("dvdf-igdf") == ("tradeoff", "keep_ratio")
    assert searched_params("dvdf-otdf") == ("tradeoff", "keep_ratio")
    assert searched_params("igdf") == ("keep_ratio",)
    assert searched_params("iql-mix") == ()
    sweep = sweep_of(methods=["iql-mix", "igdf", "dvdf-igdf"], method_params={"dvdf-igdf": {"keep_ratio": 0.4}})
    counts = {s.method: (s.num_trials, s.searched) for s in sweep.studies}
    assert counts == {"iql-mix": (1, ()), "igdf": (3, ("keep_ratio",)), "dvdf-igdf": (3, ("tradeoff",))}
    dvdf = sweep.studies[2]
    assert dvdf.fixed == {"keep_ratio": 0.4}
    config = trial_config(sweep, dvdf, {"tradeoff": 0.3})
    assert (config["tradeoff"], config["keep_ratio"], config["seeds"]) == (0.3, 0.4, [100])


def test_grid_and_fixed_modes():
    grid = sweep_of(search={"mode": "grid", "tradeoff": [0.0, 0.5, 1.0], "keep_ratio": [0.3, 0.6]})
    (study,) = grid.studies
    points = grid_points(grid.spec.search, study)
    assert study.num_trials == 6 == len(points)
    assert {(p["tradeoff"], p["keep_ratio"]) for p in points} == {(t, k) for t in (0.0, 0.5, 1.0) for k in (0.3, 0.6)}
    fixed = sweep_of(search={"mode": "fixed"}, methods=["igdf", "dvdf-igdf"], seeds=[1, 2, 3])
    assert [s.num_trials for s in fixed.studies] == [1, 1]
    assert len(stage_jobs(fixed)) == 6


def test_study_seeds_come_from_the_name():
    sweep = sweep_of(groups=[{"robots": ["hopper"], "shifts": ["kinematic", "morph"], "qualities": ["medium"]}])
    a, b = sweep.studies
    assert a.sampler_seed != b.sampler_seed
    assert a.sampler_seed == study_seed(a.name) == sweep_of(
        groups=[{"robots": ["hopper"], "shifts": ["kinematic"], "qualities": ["medium"]}]).studies[0].sampler_seed


# --- validation errors -----------------------------------------------------------------------
@pytest.mark.parametrize("changes, message", [
    ({"groups": []}, r"'groups' is empty"),
    ({"groups": [{"robots": [], "shifts": ["kinematic"], "qualities": ["medium"]}]}, r"groups\[0\]\.robots' is empty"),
    ({"groups": [{"robots": ["quadruped"], "shifts": ["kinematic"], "qualities": ["medium"]}]},
     r"groups\[0\]\.robots.*quadruped"),
    ({"groups": [{"robots": ["hopper"], "shifts": ["sideways"], "qualities": ["medium"]}]},
     r"groups\[0\]\.shifts.*hopper-sideways"),
    ({"groups": [{"robots": ["hopper"], "shifts": ["kinematic"], "qualities": ["great"]}]}, r"qualities\[0\]"),
    ({"search": {"mode": "optuna", "num_samples": 4, "tradeoff_range": [0.0, 1.5]}},
     r"tradeoff_range' \(lambda\) must lie in \[0, 1\]"),
    ({"search": {"mode": "optuna", "num_samples": 4, "tradeoff_range": [-0.2, 0.5]}}, r"lambda"),
    ({"search": {"mode": "optuna", "num_samples": 4, "keep_ratio_range": [0.0, 0.5]}}, r"xi\) must lie in \(0, 1\]"),
    ({"search": {"mode": "optuna", "num_samples": 4, "tradeoff_range": [0.9, 0.1]}}, r"low <= high"),
    ({"search": {"mode": "optuna"}}, r"num_samples"),
    ({"search": {"mode": "optuna", "num_samples": 4, "tradeoff_range": [0.8, 1.0]}},
     r"first_points\[0\]\.tradeoff' 0\.7 lies outside"),
    ({"search": {"mode": "grid", "tradeoff": [0.5, 1.2], "keep_ratio": [0.5]}},
     r"search\.tradeoff\[1\] \(lambda\) must be in \[0, 1\], got 1\.2"),
    ({"search": {"mode": "grid", "tradeoff": [0.5]}}, r"search\.keep_ratio' must list"),
    ({"search": {"mode": "grid", "tradeoff": [0.5], "keep_ratio": [0.5], "num_samples": 3}},
     r"'search\.num_samples' is not used with mode: grid"),
    ({"search": {"mode": "fixed", "tradeoff_range": [0, 1]}}, r"not used with mode: fixed"),
    ({"search": {"mode": "bayes"}}, r"search\.mode"),
    ({"searhc": {}}, r"unknown key 'searhc'"),
    ({"base": {"iql": {"stepz": 5}}}, r"unknown key 'base\.iql\.stepz'"),
    ({"base": {"filter": {"tradeoff": 1.5}}}, r"lambda"),
    ({"base": {"data": {"source_path": "x.hdf5"}}}, r"base\.data\.source_path' cannot be used"),
    ({"methods": []}, r"'methods' is empty"),
    ({"methods": ["dvdf-igdf", "dvdf-igdf"]}, r"lists a method twice"),
    ({"methods": ["dvdf-sac"]}, r"methods\[0\]"),
    ({"method_params": {"otdf": {"keep_ratio": 0.8}}}, r"method_params\.otdf' names a method that is not in"),
    ({"method_params": {"dvdf-igdf": {"tradeoff": 2.0}}}, r"lambda"),
    ({"seeds": []}, r"'seeds' is empty"),
    ({"resources": {"cpus": 0}}, r"resources\.cpus"),
    ({"resources": {"gpu": 1.5}}, r"resources\.gpu"),
    ({"resources": {"max_concurrent": 0}}, r"max_concurrent"),
    ({"asha": {"grace_period": 0}}, r"asha\.grace_period"),
    ({"max_failures": -1}, r"max_failures"),
    ({"name": "my sweep"}, r"'name'"),
    ({"groups": [{"robots": ["hopper"], "shifts": ["kinematic", "hopper-kinematic"], "qualities": ["medium"]}]},
     r"group 'hopper-kinematic-medium' appears twice"),
])
def test_invalid_sweeps_give_clear_errors(changes, message):
    with pytest.raises(DvdfError, match=message) as info:
        sweep_of(**changes)
    assert str(info.value).startswith("test.yaml")


def test_missing_datasets_without_collection_is_an_error(tmp_path):
    sweep = sweep_of(data_dir=str(tmp_path), collect_missing=False)
    assert sorted(p.name for p in required_datasets(sweep)) == ["hopper-kinematic-medium.hdf5", "hopper-medium.hdf5"]
    with pytest.raises(DvdfError, match=r"missing dataset\(s\) .*hopper-kinematic-medium\.hdf5.*collect_missing"):
        check_datasets(sweep)
    for path in required_datasets(sweep):
        path.write_bytes(b"")
    assert check_datasets(sweep) == []
    # With collection allowed, missing files are reported (and generated during preparation).
    assert len(check_datasets(sweep_of(data_dir=str(tmp_path / "empty")))) == 2


def test_cli_reports_a_bad_sweep_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**MINIMAL, "search": {"mode": "optuna", "num_samples": 2,
                                                          "tradeoff_range": [0.5, 2.0]}}))
    assert main(["sweep", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "bad.yaml" in err and "lambda" in err
    assert main(["sweep", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_missing_datasets_become_collection_suites(tmp_path):
    from dvdf.tune.prepare import missing_suites

    sweep = sweep_of(data_dir=str(tmp_path), groups=[{"robots": ["hopper", "walker2d"], "shifts": ["kinematic"],
                                                      "qualities": ["medium", "expert"]}])
    missing = required_datasets(sweep)
    (suite,) = missing_suites(sweep, missing)          # a full product: one suite, all in parallel
    assert sorted(suite.domain_names()) == ["hopper", "hopper-kinematic", "walker2d", "walker2d-kinematic"]
    assert set(suite.qualities) == {"medium", "expert"} and suite.data_dir == str(tmp_path)
    assert suite.collect == sweep.spec.base.data.collect
    # Only some files missing: suites that make exactly those.
    partial = [tmp_path / "hopper-kinematic-medium.hdf5", tmp_path / "walker2d-expert.hdf5"]
    suites = missing_suites(sweep, partial)
    made = {(name, q) for s in suites for name in s.domain_names() for q in s.qualities}
    assert made == {("hopper-kinematic", "medium"), ("walker2d", "expert")}
    assert missing_suites(sweep, []) == []


# --- resume: the file against the stored sweep.yaml ----------------------------------------------
@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_sweep_resumes_from_the_directory_it_was_started_in(name, tmp_path, monkeypatch):
    """sweep.yaml holds resolved paths, the file relative ones: --resume compares both resolved."""
    from dvdf.tune.runner import check_resumable, resolve_paths, stored_sweep_text
    from dvdf.tune.storage import ExperimentDir

    monkeypatch.chdir(tmp_path)
    started = load_sweep(CONFIGS / f"{name}.yaml")
    exp = ExperimentDir(str(tmp_path / "results" / name))
    exp.write_text(stored_sweep_text(started), "sweep.yaml")
    check_resumable(load_sweep(CONFIGS / f"{name}.yaml"), exp)          # the very same command
    stored = yaml.safe_load((tmp_path / "results" / name / "sweep.yaml").read_text())
    assert Path(stored["cache_dir"]).is_absolute() and Path(stored["base"]["data"]["data_dir"]).is_absolute()
    # A sweep.yaml as the earlier runner wrote it (base resolved, the top-level paths as given) resumes too.
    resolved = resolve_paths(started)
    legacy = {"name": started.name, **to_dict(dataclasses.replace(resolved.spec, cache_dir=started.spec.cache_dir,
                                                                 data_dir=started.spec.data_dir))}
    exp.write_text(yaml.safe_dump(legacy, sort_keys=False), "sweep.yaml")
    check_resumable(load_sweep(CONFIGS / f"{name}.yaml"), exp)


def test_resume_still_refuses_a_sweep_with_other_paths(tmp_path, monkeypatch):
    from dvdf.tune.runner import check_resumable, stored_sweep_text
    from dvdf.tune.storage import ExperimentDir

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "relative.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "cache_dir": "cache", "data_dir": "data"}))
    exp = ExperimentDir(str(tmp_path / "results" / "relative"))
    exp.write_text(stored_sweep_text(load_sweep(path)), "sweep.yaml")
    check_resumable(load_sweep(path), exp)
    with pytest.raises(DvdfError, match=r"differs from the sweep being resumed .* in 'base\.data\.data_dir'"):
        check_resumable(load_sweep(path, ["data_dir=other_data"]), exp)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)   # relative paths now name other directories
    with pytest.raises(DvdfError, match=r"in 'base\.cache_dir'"):
        check_resumable(load_sweep(path), exp)


# --- bad values of sweep fields: one line, exit 2, nothing written ------------------------------
BAD_SWEEP_FIELDS = [
    ({"name": "a/b"}, "'name' 'a/b' must be letters"),
    ({"groups": [{"robots": ["hopper"], "shifts": ["kinematic"], "qualities": ["medium"],
                  "target": [{"fraction": 0.1, "transitions": 5}]}]}, "exactly one of 'fraction' or 'transitions'"),
    ({"groups": [{"robots": ["hopper"], "shifts": ["kinematic"], "qualities": ["medium"],
                  "target": [{"fraction": 0}]}]}, "target fraction must be in (0, 1], got 0"),
    ({"groups": [{"robots": ["hopper"], "shifts": ["kinematic"], "qualities": ["medium"], "source": "both"}]},
     "'groups[0].source' must be one of 'shifted', 'original'"),
    ({"groups": "hopper"}, "'groups' must be a list"),
    ({"methods": ["dvdf-igdf"], "method_params": {"dvdf-igdf": {"keep_ratio": 0.001}}},
     "method_params.dvdf-igdf.keep_ratio (xi) 0.001 keeps no row of a source batch of 128"),
    ({"search": {"mode": "optuna", "num_samples": 0}}, "'search.num_samples' (trials per study) must be >= 1"),
    ({"search": {"mode": "optuna", "num_samples": 2, "keep_ratio_range": [0.005, 1.0],
                 "first_points": []}},
     "search.keep_ratio_range[0] (xi) 0.005 keeps no row of a source batch of 128 (iql.batch_size); "
     "the smallest valid xi is 1/128 = 0.0078125"),
    ({"search": {"mode": "optuna", "num_samples": 2, "keep_ratio_range": [0.6, 0.2]}}, "low <= high"),
    ({"search": {"mode": "optuna", "num_samples": 2, "tradeoff_range": [0.1]}}, "low <= high, got [0.1]"),
    ({"search": {"mode": "optuna", "num_samples": 2, "startup_trials": -1}}, "'search.startup_trials' must be >= 0"),
    ({"search": {"mode": "optuna", "num_samples": 2, "first_points": [{"tradeoff": 2.0, "keep_ratio": 0.5}]}},
     "search.first_points[0].tradeoff (lambda) must be in [0, 1], got 2.0"),
    ({"search": {"mode": "grid", "tradeoff": [], "keep_ratio": [0.5]}}, "'search.tradeoff' must list at least one"),
    ({"search": {"mode": "grid", "tradeoff": [0.5, 0.5], "keep_ratio": [0.5]}}, "lists a value twice"),
    ({"search": {"mode": "grid", "tradeoff": [0.5], "keep_ratio": [0.005]}},
     "search.keep_ratio[0] (xi) 0.005 keeps no row of a source batch of 128"),
    ({"base": {"filter": {"keep_ratio": 0.004}}, "search": {"mode": "fixed"}},
     "base.filter.keep_ratio (xi) 0.004 keeps no row"),
    ({"seeds": [1, 1]}, "'seeds' lists a seed twice"),
    ({"seeds": [-1]}, "'seeds' must be >= 0"),
    ({"seeds": "100"}, "'seeds' must be a list"),
    ({"batch_seeds": "yes"}, "'batch_seeds' must be true or false"),
    ({"asha": {"reduction_factor": 1}}, "'asha.reduction_factor' must be > 1"),
    ({"asha": {"grace_period": 3, "max_t": 2}}, "'asha.max_t' must be >= 'asha.grace_period'"),
    ({"storage": ""}, "'storage' is empty"),
    ({"cache_dir": " "}, "'cache_dir' is empty"),
    ({"checkpoints_to_keep": 0}, "'checkpoints_to_keep' must be >= 1"),
    ({"collect_missing": "maybe"}, "'collect_missing' must be true or false"),
    ({"object_store_memory": 1000}, "Ray needs at least 78 MB"),
    ({"base": {"eval": {"every": 0}}}, "eval.every must be > 0"),
]


@pytest.mark.parametrize("changes, message", BAD_SWEEP_FIELDS)
def test_bad_sweep_fields_are_one_line(changes, message):
    with pytest.raises(DvdfError) as info:
        sweep_of(**changes)
    assert str(info.value).startswith("test.yaml: ") and "\n" not in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize("changes, message", [
    ({"cache_dir": "{file}"}, "cache_dir: {file} is a file, not a directory"),
    ({"data_dir": "{file}"}, "data_dir: {file} is a file, not a directory"),
    ({"storage": "{file}/results"}, "storage: {file}/results cannot be created: {file} is a file"),
    ({"storage": "/proc/dvdf_results"}, "storage: /proc/dvdf_results is not writable"),
    ({"cache_dir": "/proc/dvdf_cache"}, "cache_dir: /proc/dvdf_cache is not writable"),
])
def test_sweep_locations_are_checked_before_anything_starts(changes, message, tmp_path, capsys):
    plain = tmp_path / "plain.txt"
    plain.write_text("a file\n")
    raw = {**MINIMAL, "storage": str(tmp_path / "results"), "cache_dir": str(tmp_path / "cache"),
           "data_dir": str(tmp_path / "data")}
    raw.update({k: v.format(file=plain) for k, v in changes.items()})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message.format(file=plain) in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "plain.txt"]   # nothing written
