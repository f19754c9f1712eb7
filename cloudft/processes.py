"""Background processes cloudft starts in their own session (local runs, local servers): alive? stop the group."""

from __future__ import annotations

import os
import signal
import time


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


def stop_group(pid: int, grace_s: float) -> None:
    """SIGTERM the process group `pid` leads, then SIGKILL what is left after `grace_s` seconds."""
    if not alive(pid):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + grace_s
    while time.time() < deadline and alive(pid):
        time.sleep(0.1)
    if alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
