"""docs/EVIDENCE.md's generator: every number comes from the files under docs/evidence/."""

from __future__ import annotations

import json

import numpy as np
from test_report import write_run

from dvdf.report.analysis import Options, analyse
from dvdf.report.build import statistics
from dvdf.report.evidence import generation_summary, render_evidence
from dvdf.report.load import load_experiment

KEPT_HEADER = "quality,seed,method,policy,source_share,kept_share,keep_rate"
AUC_HEADER = "quality,seed,model,steps,positive,negative,auc,n_positive,n_negative"


def write_alignment(evidence, quality, kept=(), auc=()):
    """The alignment step's CSVs of ``quality`` (its kept and AUC files) from data lines."""
    folder = evidence / "alignment"
    folder.mkdir(parents=True, exist_ok=True)
    for name, header, lines in (("kept", KEPT_HEADER, kept), ("auc", AUC_HEADER, auc)):
        if lines:
            (folder / f"{name}_{quality}.csv").write_text("\n".join([header, *lines]) + "\n")


def test_nothing_measured_yet_says_so(tmp_path):
    text = render_evidence(tmp_path / "evidence", tmp_path / "EVIDENCE.md").read_text()
    assert "No finished runs yet" in text and "makes no claim" in text
    assert "Not generated yet" in text and "Not measured yet" in text


def test_tables_are_computed_from_the_files(tmp_path):
    evidence = tmp_path / "evidence"
    rng = np.random.default_rng(1)
    for method, level in (("igdf", 40.0), ("dvdf-igdf", 60.0)):
        for seed in (100, 200, 300, 400, 500):
            write_run(evidence / "runs" / "hopper-kinematic-medium-expert" / method / f"seed_{seed}", method,
                      list(level + rng.normal(0, 3, 6)), seed=seed, quality="medium-expert",
                      extra=lambda i: {"train_steps_per_s": 40.0 + i})
    (evidence / "hopper_sac_curve.jsonl").write_text("".join(json.dumps(
        {"step": s, "return_deterministic": r, "return_stochastic": r - 10}) + "\n"
        for s, r in ((0, 10.0), (10_000, 3100.0), (20_000, 2900.0))))
    write_alignment(evidence, "random-expert",
                    kept=["random-expert,100,igdf,random,0.5,0.41,0.41", "random-expert,100,igdf,expert,0.5,0.59,0.59"],
                    auc=["random-expert,100,sql,10000,expert,random,0.8125,10,10"])
    (evidence / "timings.jsonl").write_text(json.dumps(
        {"command": "python scripts/evidence.py render", "wall_s": 90.0, "finished_at": "2026-12-02 05:00:00"}) + "\n")
    text = render_evidence(evidence, tmp_path / "EVIDENCE.md", reps=200).read_text()

    stats = statistics(analyse(load_experiment(evidence / "runs"), None, None,
                               Options(last_k=5, pairs=(("dvdf-igdf", "igdf"),), reps=200)))
    for cell in stats["cells"]["last_k"]:
        assert f"{cell['mean']:.1f} +- {cell['std']:.1f} (n=5)" in text
    pair, = [p for p in stats["probability_of_improvement"]["pairs"] if p["x"] == "dvdf-igdf"]
    assert f"| dvdf-igdf | igdf | {pair['point']:.2f} [{pair['ci_low']:.2f}, {pair['ci_high']:.2f}] | 1 |" in text
    assert "**dvdf-igdf beats igdf** here" in text      # 60 vs 40, 3 std apart: CI excludes 0.5
    means = {c["method"]: c["mean"] for c in stats["cells"]["last_k"]}
    assert f"{means['dvdf-igdf'] - means['igdf']:+.1f})" in text
    assert "| `hopper` | 20,000 | 2,900.0 | 20,000 (final) | 2,900.0 |" in text  # no choice file: final rule
    assert "3,100.0 at 10,000" in text
    assert "| igdf | expert | 0.500 | 0.590 | 0.590 |" in text and "| sql | 10,000 | 100 | 0.812 |" in text
    assert "| `python scripts/evidence.py render` | 1.5 |" in text
    # The sweep's own rate: median 42.5 batched steps/s (40..45) x 5 seeds.
    assert "| `hopper-kinematic-medium-expert` | igdf | 5 | 42.5 | 212 |" in text
    # The figures: behaviour curves drawn, the report of the runs built beside them and embedded.
    assert (evidence / "figures" / "sac_curves.png").stat().st_size > 0
    assert "![SAC learning curves](evidence/figures/sac_curves.png)" in text
    assert (evidence / "report" / "README.md").is_file()
    assert "[evidence/report/README.md](evidence/report/README.md)" in text
    curves, = [line for line in text.splitlines() if line.startswith("![") and "learning_curves" in line]
    assert (tmp_path / curves.split("(")[1].rstrip(")")).is_file()


def test_alignment_over_seeds_is_mean_and_std(tmp_path):
    evidence = tmp_path / "evidence"
    write_alignment(evidence, "medium-expert",
                    kept=["medium-expert,100,igdf,expert,0.5,0.60,0.6", "medium-expert,200,igdf,expert,0.5,0.70,0.7",
                          "medium-expert,100,dvdf-igdf,expert,0.5,0.62,0.62",
                          "medium-expert,200,dvdf-igdf,expert,0.5,0.76,0.76"],
                    auc=["medium-expert,100,sql,100000,expert,medium,0.7,10,10",
                         "medium-expert,200,sql,100000,expert,medium,0.9,10,10"])
    text = render_evidence(evidence, tmp_path / "EVIDENCE.md").read_text()
    assert "seed(s) 100, 200" in text
    assert "| igdf | expert | 0.500 +- 0.000 | 0.650 +- 0.071 | 0.650 +- 0.071 |" in text
    assert "| sql | 100,000 | 100, 200 | 0.800 +- 0.141 |" in text
    # Paired by seed: +2 and +6 points over igdf.
    assert "- dvdf-igdf: +4.0 +- 2.8 points (2 of 2 seeds above igdf; range +2.0 to +6.0)" in text


def test_return_to_go_of_the_kept_rows_is_tabled_and_paired_by_seed(tmp_path):
    evidence = tmp_path / "evidence"
    folder = evidence / "alignment"
    folder.mkdir(parents=True)
    header = KEPT_HEADER + ",source_return_to_go,kept_return_to_go"
    (folder / "kept_medium-expert.csv").write_text("\n".join([
        header,
        "medium-expert,100,igdf,expert,0.5,0.6,0.6,100.0,110.0",
        "medium-expert,200,igdf,expert,0.5,0.6,0.6,100.0,120.0",
        "medium-expert,100,dvdf-igdf,expert,0.5,0.6,0.6,100.0,115.0",
        "medium-expert,200,dvdf-igdf,expert,0.5,0.6,0.6,100.0,135.0"]) + "\n")
    text = render_evidence(evidence, tmp_path / "EVIDENCE.md").read_text()
    assert "| return-to-go, batch | return-to-go, kept |" in text
    assert "| igdf | expert | 0.500 +- 0.000 | 0.600 +- 0.000 | 0.600 +- 0.000 | 100.0 +- 0.0 | 115.0 +- 7.1 |" in text
    # Paired by seed: +5 and +15 over igdf.
    assert "- dvdf-igdf, expert rows: +10.0 +- 7.1 (2 of 2 seeds above igdf; range +5.0 to +15.0)" in text
    # Section 6: all kept rows, weighted by kept share (0.6 x 110 and 0.6 x 120 for igdf), seed mean.
    assert "the kept rows' mean return-to-go is igdf 69.0, dvdf-igdf 75.0 (the batches' 50.0)" in text


def test_kept_rows_measured_before_the_return_to_go_have_no_such_column(tmp_path):
    evidence = tmp_path / "evidence"
    write_alignment(evidence, "medium-expert", kept=["medium-expert,100,igdf,expert,0.5,0.60,0.6"])
    text = render_evidence(evidence, tmp_path / "EVIDENCE.md").read_text()
    assert "| igdf | expert | 0.500 | 0.600 | 0.600 |" in text and "return-to-go" not in text


def test_datasets_regenerated_with_other_rollouts_are_listed_with_their_cpu(tmp_path):
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    row = {"path": "hopper-expert.hdf5", "transitions": 1000000, "episodes": 1724, "return_mean": 1961.46,
           "return_normalized": 60.9, "behaviour_policy_steps": 500000, "behaviour_policy_mean_return": 1451.8}
    (evidence / "datasets.jsonl").write_text(json.dumps(row) + "\n")
    text = render_evidence(evidence, tmp_path / "EVIDENCE.md").read_text()
    assert "| `hopper-expert.hdf5` | 1,000,000 | 1724 | 1,961.5 |" in text and "Regenerated" not in text
    (evidence / "datasets_regenerated.jsonl").write_text(json.dumps(
        {**row, "episodes": 1719, "return_mean": 1958.0, "cpu": "Xeon (avx512f, amx_tile)",
         "regenerated_at": "2026-12-03 07:00:00"}) + "\n")
    text = render_evidence(evidence, tmp_path / "EVIDENCE.md").read_text()
    assert "Regenerated on another machine" in text
    assert "| `hopper-expert.hdf5` | 1,000,000 | 1719 | 1,958.0 |" in text and "| Xeon (avx512f, amx_tile) |" in text


def test_alignment_rows_name_the_data_generation_they_were_measured_on(tmp_path):
    """Seed 100 measured before the source file was regenerated on this CPU, seed 200 after it;
    a regeneration on another CPU does not count for a step that ran elsewhere."""
    evidence = tmp_path / "evidence"
    write_alignment(evidence, "random-expert", kept=[f"random-expert,{seed},igdf,expert,0.5,{share},{share}"
                                                     for seed, share in ((100, 0.2), (200, 0.3), (300, 0.3))])
    (evidence / "datasets_regenerated.jsonl").write_text("".join(json.dumps(
        {"path": "hopper-kinematic-random-expert.hdf5", "cpu": cpu, "regenerated_at": at}) + "\n"
        for cpu, at in (("cpu-b", "2026-12-03 07:00:00"), ("cpu-c", "2026-12-03 08:00:00"))))
    timings = [("100", "2026-12-02 06:00:00", None), ("200", "2026-12-03 13:00:00", "cpu-b"),
               ("300", "2026-12-03 09:00:00", "cpu-a")]
    (evidence / "timings.jsonl").write_text("".join(json.dumps(
        {"step": "alignment", "command": f"python scripts/evidence.py --set 'x=[1, 2]' alignment random-expert "
                                         f"--seeds {seed}", "wall_s": 1.0, "finished_at": at,
         **({"cpu": cpu} if cpu else {})}) + "\n" for seed, at, cpu in timings))
    text = render_evidence(evidence, tmp_path / "EVIDENCE.md").read_text()
    assert ("Source data `hopper-kinematic-random-expert.hdf5` of these rows: seed(s) 100, 300: as first written "
            "(datasets.jsonl); seed(s) 200: regenerated 2026-12-03 07:00:00") in text


def test_the_conclusion_states_what_the_filters_keep_from_the_alignment_files(tmp_path):
    evidence = tmp_path / "evidence"
    kept = []
    for seed, igdf, dvdf in ((100, 0.10, 0.20), (200, 0.14, 0.22), (300, 0.12, 0.24)):
        kept += [f"random-expert,{seed},igdf,expert,0.5,{igdf},{igdf}", f"random-expert,{seed},igdf,random,0.5,{1 - igdf},0",
                 f"random-expert,{seed},dvdf-igdf,expert,0.5,{dvdf},{dvdf}"]
    write_alignment(evidence, "random-expert", kept=kept,
                    auc=["random-expert,100,sql,10000,expert,random,0.9,10,10",
                         "random-expert,100,sql,100000,expert,random,0.7,10,10",
                         "random-expert,200,sql,100000,expert,random,0.8,10,10",
                         "random-expert,100,iql,100000,expert,random,0.55,10,10"])
    text = render_evidence(evidence, tmp_path / "EVIDENCE.md").read_text()
    conclusion = text.split("## 6.")[1].split("## 7.")[0]
    assert ("- `random-expert` (3 seed(s)): expert rows are 50.0% of the source batches and igdf 12.0%, dvdf-igdf "
            "22.0% of the kept rows; the dynamics score alone (igdf) keeps expert rows less often than they occur "
            "(-38.0 +- 2.0 points over seeds); the stage-1 advantage ranks expert above random rows with ROC AUC "
            "0.75 (SQL, 2 seeds), 0.55 (IQL, 1 seed) after 100,000 steps.") in conclusion


def test_policy_table_shows_the_expert_chosen_on_a_fresh_evaluation(tmp_path):
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    (evidence / "hopper_sac_curve.jsonl").write_text("".join(json.dumps(
        {"step": s, "return_deterministic": r, "return_stochastic": r - 10}) + "\n"
        for s, r in ((0, 10.0), (10_000, 3100.0), (20_000, 2900.0), (30_000, 1500.0))))
    candidates = [{"step": 10_000, "path": "a", "training_return_stochastic": 3090.0, "return_stochastic": 2500.0,
                   "return_deterministic": 2600.0},
                  {"step": 20_000, "path": "b", "training_return_stochastic": 2890.0, "return_stochastic": 2800.0,
                   "return_deterministic": 2950.0}]
    (evidence / "hopper_expert_choice.json").write_text(json.dumps(
        {"step": 20_000, "path": "b", "return_stochastic": 2800.0, "return_deterministic": 2950.0,
         "selection": {"rule": "best", "episodes": 20, "seed": 20_000, "candidates": candidates}}))
    text = render_evidence(evidence, tmp_path / "EVIDENCE.md", reps=50).read_text()
    assert "| `hopper` | 30,000 | 1,500.0 | 20,000 (best of 2, 20 fresh episodes) | 2,950.0 |" in text
    assert "| `hopper` | 20,000 | 2,890.0 | 2,800.0 | 2,950.0 | **expert** |" in text
    assert "| `hopper` | 10,000 | 3,090.0 | 2,500.0 | 2,600.0 |  |" in text


def test_an_earlier_data_generation_gets_its_own_document_and_a_link(tmp_path):
    evidence = tmp_path / "evidence"
    old = evidence / "generation-1"
    old.mkdir(parents=True)
    (old / "README.md").write_text("# Data generation 1\n\nThe expert was the final actor.\nSee EVIDENCE.md.\n\nMore.\n")
    (evidence / "bench.json").write_text(json.dumps(
        {"members": {"1": {"5": {"compiled_step": {"member_steps_per_s": 100.0}}}}, "cores": 2}))
    # The generation's own document: its note under the title, the shared bench for its budget.
    text = render_evidence(old, old / "EVIDENCE.md", reps=50, bench_file=evidence / "bench.json",
                           generation_note=generation_summary(old)).read_text()
    assert "from the files in this directory" in text
    assert "**An earlier data generation.** The expert was the final actor. See EVIDENCE.md." in text
    assert "| one cell (5 seeds x 100k steps) | 100 |" in text
    # The current document links it, with the same note, and does not read its runs.
    main = render_evidence(evidence, tmp_path / "EVIDENCE.md", reps=50, generations=[old]).read_text()
    assert "- [generation-1](evidence/generation-1/EVIDENCE.md): The expert was the final actor. See EVIDENCE.md." in main
    assert "**An earlier data generation.**" not in main and "No finished runs yet" in main
