"""``iql.compile: auto``: which mode a run uses, and why (the run header prints the reason).

"auto" compiles the whole step (``step``) where it pays and runs eagerly (``off``) otherwise:
compiling needs a C++ compiler on CPU (inductor writes C++ kernels; on CUDA it writes Triton ones),
and it costs a fixed time up front that a short run does not earn back. The break-even is
compile time / (1/eager rate - 1/compiled rate); :data:`MIN_COMPILED_STEPS` sits well above it
(see its comment), so "auto" only compiles runs that gain clearly.
"""

from __future__ import annotations

import os
import shutil
from typing import Callable, Optional

import torch

from dvdf.config import IQLConfig

# Measured for the whole step on this project's shared 2-core CPU (hopper sizes, one thread, dvdf
# bench's workload, the machine loaded): the first compile took 79-207 s cold (10-38 s with
# inductor's on-disk cache warm) and saves ~3 ms per step (eager ~7.3 ms, compiled ~4.4 ms per
# CPU-second): a break-even of ~25k-70k steps cold. 50k keeps smoke runs and tests eager; the
# paper's 1M-step runs compile.
MIN_COMPILED_STEPS = 50_000


def cpp_compiler() -> Optional[str]:
    """Path of the C++ compiler inductor would use on CPU ($CXX, else g++, c++, clang++), or None."""
    candidates = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
    return next((path for path in map(shutil.which, candidates) if path), None)


def resolve_compile_mode(cfg: IQLConfig, device) -> tuple[str, str]:
    """(``iql.compile`` mode to run - "off", "losses" or "step" - and a short reason for the header)."""
    if cfg.compile != "auto":
        return cfg.compile, "iql.compile as configured"
    device = torch.device(device)
    if cfg.steps < MIN_COMPILED_STEPS:
        return "off", f"auto: {cfg.steps} steps are too few to repay compiling (< {MIN_COMPILED_STEPS})"
    if device.type == "cuda":
        return "step", "auto: whole step compiled (CUDA graph) on the GPU"
    if device.type == "cpu":
        compiler = cpp_compiler()
        if compiler is None:
            return "off", "auto: no C++ compiler found (g++/clang++ or $CXX), eager"
        return "step", f"auto: whole step compiled with {os.path.basename(compiler)}"
    return "off", f"auto: eager on device type {device.type!r}"


def skip_guards_after_first_call(compiled: Callable) -> Callable:
    """``compiled`` (a ``torch.compile`` result) called as is the first time - the compile - and
    from then on with guard evaluation skipped (``skip_guard_eval_unsafe``).

    Guards re-check every input tensor's metadata on each call (~80-100 state tensors for dvdf's
    updates: a visible share of a CPU step). That is safe to skip only for a function whose inputs
    never change shape, dtype or device between calls and whose state is updated and loaded in
    place, as the IQL whole step's and the SAC update's are; only the cheap guards that tell cached
    graphs apart still run, and the inputs themselves are read on every call.
    """
    called = False

    def call(*args):
        nonlocal called
        if called:
            with torch.compiler.set_stance(skip_guard_eval_unsafe=True):
                return compiled(*args)
        called = True
        return compiled(*args)

    return call
