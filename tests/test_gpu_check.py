"""scripts/gpu_check.py: one line and exit 2 without a GPU; the CPU rehearsal writes the JSON that the
real check writes (the GPU run itself needs a GPU and is not part of the test suite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.py"


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=2400, check=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: run make gpu-check")
def test_without_a_gpu_one_line_and_exit_2(tmp_path):
    proc = run_script("--out", str(tmp_path / "g.json"), cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "GPU" in lines[0]
    assert proc.stdout == ""
    assert not (tmp_path / "g.json").exists()


def test_sweep_file_is_a_valid_four_trial_grid_at_a_quarter_gpu(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(SCRIPT.parent))
    from dvdf.tune.spec import load_sweep

    path = tmp_path / "sweep.yaml"
    path.write_text(gpu_check.tiny_sweep_yaml(tmp_path, 0.25, 4))
    sweep = load_sweep(str(path), [])
    assert sweep.spec.resources.gpu == 0.25 and sweep.spec.resources.max_concurrent == 4
    assert sweep.num_trials == 4


def test_cpu_rehearsal_writes_every_part(tmp_path):
    """bench, OT, SAC and collection for real at tiny sizes on the CPU (the sweep: the slow test below)."""
    out = tmp_path / "g.json"
    proc = run_script("--device", "cpu", "--parts", "bench", "ot", "sac", "collect", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["rehearsal"] is True and report["gpu"] is None and report["errors"] == {}
    assert set(report["parts"]) == {"bench", "ot", "sac", "collect"}
    assert report["parts"]["bench"]["result"]["train"]["1"]["steps_per_s"]["authors"] > 0
    assert report["parts"]["ot"]["finite"] and report["parts"]["ot"]["subset_max_abs_diff_to_cpu"] == 0.0
    assert report["parts"]["sac"]["1"]["eager"]["updates_per_s"] > 0
    assert report["parts"]["collect"]["2"]["transitions"] == 400
    assert set(report["seconds"]) == {"bench", "ot", "sac", "collect", "total"}


@pytest.mark.slow
def test_cpu_rehearsal_of_the_sweep(tmp_path):
    out = tmp_path / "g.json"
    proc = run_script("--device", "cpu", "--parts", "sweep", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sweep = json.loads(out.read_text())["parts"]["sweep"]
    assert sweep["trials"] == 4 and sweep["finished"] == 4
