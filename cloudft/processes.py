"""Background processes cloudft starts in their own session (local runs, local servers): which process a recorded
id still names, whether it runs, and stopping its group — never signalling a process that merely reuses the id."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

from .errors import CloudftError


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie child of this process counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True


def process_identity(pid: int) -> Optional[dict[str, Any]]:
    """What tells process `pid` apart from a later process with the same id: its command line and its start
    time (clock ticks since boot, with the boot id). None when there is no such process or it cannot be read."""
    proc = Path("/proc") / str(pid)
    try:
        cmdline = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        stat = (proc / "stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return _ps_identity(pid)
    # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces and ')', field 22 is the start time
    start = stat.rsplit(")", 1)[1].split()[19]
    return {"cmdline": [a for a in cmdline if a], "start": f"{boot}:{start}"}


def _ps_identity(pid: int) -> Optional[dict[str, Any]]:
    """The same from `ps` where there is no /proc (macOS)."""
    if Path("/proc/self").exists():
        return None  # /proc is there and the process is not
    try:
        out = subprocess.run(["ps", "-o", "lstart=", "-o", "command=", "-p", str(pid)], capture_output=True,
                             text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not out:
        return None
    parts = out.split()
    return {"cmdline": parts[5:], "start": " ".join(parts[:5])}


def same_process(pid: Optional[int], recorded: Optional[dict[str, Any]]) -> bool:
    """Is `pid` alive and the process `recorded` (its identity) named? The start time (with the boot id) names one
    process for good; the command line is not compared: it is recorded right after fork, possibly before the exec."""
    if not pid or not alive(pid) or not recorded:
        return False
    now = process_identity(pid)
    return now is not None and now["start"] == recorded.get("start")


def signal_group(pid: int, sig: int) -> None:
    """Signal the process group `pid` leads; one that ended meanwhile is fine, one we may not signal is an error."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise CloudftError(f"not allowed to signal process group {pid} ({exc.strerror})",
                           hint="stop it as the user that started it") from None


def stop_group(pid: int, grace_s: float, still=None) -> None:
    """SIGTERM the group `pid` leads, then SIGKILL what is left after `grace_s` seconds. `still()` (default: the
    process is alive) is asked before each signal, so a process that reused the id is never signalled."""
    still = still or (lambda: alive(pid))
    if not still():
        return
    signal_group(pid, signal.SIGTERM)
    deadline = time.time() + grace_s
    while time.time() < deadline and still():
        time.sleep(0.1)
    if still():
        signal_group(pid, signal.SIGKILL)
