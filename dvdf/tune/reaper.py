"""Ray's processes die with the sweep driver that started them, even when it is SIGKILLed.

``ray.init`` on a local machine starts the GCS, the raylet, the dashboard/runtime-env agents and
the workers as descendants of the driver. A driver that exits cleanly stops them (``ray.shutdown``);
one killed with SIGKILL cannot, and some of them (the agents, seen as ``ray::DashboardAgent`` and
``ray::RuntimeEnvAgent`` with parent 1) then live on for minutes. :func:`watch_driver` starts a
small watcher process in its own session (so a signal to the driver's process group does not reach
it) that keeps a list of the driver's descendants, re-read every ``interval`` seconds from /proc,
and holds a pipe from the driver. When the pipe closes - the driver is gone, however it died - it
terminates every process of its last list that is still alive with the same start time (so a
reused PID is never hit), then kills those that did not stop. It only ever touches processes that
were descendants of the driver, started after the watcher (that is, by ``ray.init``). Linux only
(/proc); elsewhere it does nothing.

Run as ``python -m dvdf.tune.reaper DRIVER_PID`` (by :func:`watch_driver`; no Ray import).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

INTERVAL_S = 0.5
GRACE_S = 3.0


def watch_driver(driver_pid: Optional[int] = None) -> Optional[subprocess.Popen]:
    """Start the watcher for ``driver_pid`` (default: this process); None where /proc is missing."""
    if not Path("/proc/self/stat").exists():
        return None
    driver_pid = os.getpid() if driver_pid is None else driver_pid
    # stdin is the pipe: it closes when the driver dies. The watcher keeps no other fd of ours open.
    return subprocess.Popen([sys.executable, "-m", "dvdf.tune.reaper", str(driver_pid)], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            close_fds=True)


def _stat(pid: int) -> Optional[tuple[int, int]]:
    """(parent pid, start time in clock ticks) of a live process, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()   # the command name may hold spaces and parentheses
    if fields[0] == "Z":                               # a zombie has exited already
        return None
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """{pid: start time} of every live descendant of ``root`` (not ``root`` itself)."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(int(entry))
            if info is not None:
                parents.setdefault(info[0], []).append(int(entry))
                starts[int(entry)] = info[1]
    found, todo = {}, list(parents.get(root, []))
    while todo:
        pid = todo.pop()
        if pid not in found and pid in starts:
            found[pid] = starts[pid]
            todo.extend(parents.get(pid, []))
    return found


def _alive(pid: int, start: int) -> bool:
    info = _stat(pid)
    return info is not None and info[1] == start


def reap(processes: dict[int, int], grace_s: float = GRACE_S) -> list[int]:
    """SIGTERM, then after ``grace_s`` SIGKILL, every listed process still alive; returns those signalled."""
    signalled = []
    for pid, start in processes.items():
        if _alive(pid, start):
            try:
                os.kill(pid, signal.SIGTERM)
                signalled.append(pid)
            except OSError:
                pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(p, processes[p]) for p in signalled):
        time.sleep(0.1)
    for pid in signalled:
        if _alive(pid, processes[pid]):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return signalled


def main(driver_pid: int) -> int:
    me = os.getpid()
    # What the driver had started before it started us (and so before ray.init) is not Ray's: left alone.
    before = descendants(driver_pid)
    known: dict[int, int] = {}
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], INTERVAL_S)
        if ready and not os.read(sys.stdin.fileno(), 4096):   # EOF: the driver has gone
            break
        current = {pid: start for pid, start in descendants(driver_pid).items()
                   if pid != me and before.get(pid) != start}
        if current:
            # Keep what we saw: a process may outlive its parent, and the tree is re-read each time.
            known = {pid: start for pid, start in {**known, **current}.items() if _alive(pid, start)}
    # Children of the listed ones started after the last look (a worker just forked) die with them:
    # they are Ray processes too, so add them before signalling.
    for pid in list(known):
        known.update(descendants(pid))
    known = {pid: start for pid, start in known.items() if pid != me and before.get(pid) != start}
    reap(known)
    return 0


if __name__ == "__main__":  # pragma: no cover - run by watch_driver
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C in the driver's terminal is not for us
    sys.exit(main(int(sys.argv[1])))
