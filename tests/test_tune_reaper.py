"""The watcher that ends a SIGKILLed sweep driver's Ray processes (dvdf.tune.reaper), without Ray:
a stand-in driver starts one child before the watcher (not Ray's: left alone) and one after (as
ray.init would), and is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dvdf.tune.reaper import _alive, _stat

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")

DRIVER = """
import subprocess, sys, time
from dvdf.tune.reaper import watch_driver
before = subprocess.Popen(["sleep", "300"])          # the driver's own child, started before the watcher
watcher = watch_driver()
time.sleep(1.0)                                       # the watcher has listed what exists now
after = subprocess.Popen(["sleep", "300"])           # as ray.init starts its processes
print(before.pid, after.pid, watcher.pid, flush=True)
time.sleep(300)
"""


def test_a_killed_drivers_later_children_die_with_it_and_nothing_else(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER))
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    before, after, watcher = (int(x) for x in driver.stdout.readline().split())
    starts = {pid: _stat(pid)[1] for pid in (before, after, watcher)}
    try:
        time.sleep(1.5)                       # at least two looks at the tree
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 20
        while (_alive(after, starts[after]) or _alive(watcher, starts[watcher])) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(after, starts[after])       # started after the watcher: ended with the driver
        assert not _alive(watcher, starts[watcher])   # the watcher is done too
        assert _alive(before, starts[before])         # not the watcher's to end
    finally:
        for pid in (before, after):
            if _alive(pid, starts[pid]):
                os.kill(pid, signal.SIGKILL)
