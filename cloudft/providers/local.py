"""The local provider: train_entry in a subprocess on this machine. No account needed.

Layout of a local run (under the spec's `outputs.dir`, default `runs/` beside the spec):

    RUN_ID/
      plan.json             the resolved plan
      log.txt               everything the stages printed
      0-sft/run.json        the run config train_entry reads
      0-sft/output/         adapter, tokenizer, metrics.json, train_log.jsonl, report.md
      0-sft/checkpoints/    resumable checkpoints
      1-dpo/...
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from ..errors import CloudftError
from ..handles import LocalHandle
from ..registry import Registry, RunRecord
from ..stages import StageLocations
from .base import Provider

if TYPE_CHECKING:
    from ..machine import Machine
    from ..plan import Plan
    from ..preflight import Finding
    from ..spec import JobSpec
    from ..stages import StageContext

STOP_GRACE_S = 60


class LocalProvider(Provider):
    name = "local"
    requires = (("torch", "train"), ("transformers", "train"), ("peft", "train"), ("trl", "train"))
    handle_type = LocalHandle

    def __init__(self, machine: "Optional[Machine]" = None) -> None:
        self._machine = machine

    @property
    def machine(self) -> "Machine":
        """The machine runs start on (this one unless given)."""
        from ..machine import this_machine

        return self._machine or this_machine()

    def preflight(self, plan: "Plan") -> "list[Finding]":
        """Model, secrets, memory, GPU and time on this machine (cloudft.providers.local_preflight)."""
        from ..preflight import run_rules
        from .local_preflight import local_rules

        return run_rules(local_rules(self.machine), plan)

    def run_dir(self, spec: "JobSpec", run_id: str) -> Path:
        base = Path(spec.outputs.dir)
        if not base.is_absolute():
            base = spec.base_dir / base
        return (base / run_id).resolve()

    def checkpoint_root(self, spec: "JobSpec") -> Path:
        """Checkpoints live beside the runs, keyed by what is trained (not by run id), so submitting the same
        spec and data again after a stop, a crash or a reboot resumes where it left off."""
        return self.run_dir(spec, ".checkpoints")

    def locate(self, spec: "JobSpec", run_id: str, stage: "StageContext") -> StageLocations:
        run_dir = self.run_dir(spec, run_id)
        stage_dir = run_dir / stage.name
        links = stage.links
        init = None if links.init_from is None else str(run_dir / stage.names[links.init_from] / "output")
        return StageLocations(
            stage_dir=str(stage_dir),
            output_dir=str(stage_dir / "output"),
            checkpoint_dir=str(self.checkpoint_root(spec) / f"{spec.name}-{stage.index}-{stage.work_key}"),
            train=stage.data.train,
            validation=stage.data.validation,
            init_adapter=init if links.init_kind == "adapter" else None,
            init_model=init if links.init_kind == "full_weights" else None,
            reward_model=None if links.reward_from is None else str(run_dir / stage.names[links.reward_from] / "output"),
        )

    # -- lifecycle ---------------------------------------------------------------------------
    @staticmethod
    def secret_env(spec: "JobSpec") -> dict[str, str]:
        """ENV_NAME → value for `env:VAR` references; values stay in the child's environment only."""
        env = {}
        for name, ref in spec.secrets.items():
            var = ref[len("env:"):]
            if var in os.environ:
                env[name] = os.environ[var]
        return env

    def submit(self, plan: "Plan", *, dry_run: bool = False, **options: Any) -> RunRecord:
        run_dir = self.run_dir(plan.spec, plan.run_id)
        if dry_run:
            return [{"write": str(Path(s.locations.stage_dir) / "run.json"),
                     "run_config": s.run_config.model_dump(mode="json")} for s in plan.stages]
        run_dir.mkdir(parents=True, exist_ok=False)
        (run_dir / "plan.json").write_text(plan.to_json())
        for st in plan.stages:
            st.run_config.write(Path(st.locations.stage_dir) / "run.json")
        reg = Registry()
        rec = RunRecord(
            run_id=plan.run_id, name=plan.spec.name, provider=self.name, status="starting",
            spec_path=str(plan.spec.source_path) if plan.spec.source_path else None, run_dir=str(run_dir),
            handle=LocalHandle(**LocalHandle.common(plan)).model_dump(mode="json"),
        )
        reg.add(rec)
        log = open(run_dir / "log.txt", "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.update(self.secret_env(plan.spec))
        proc = subprocess.Popen(
            [sys.executable, "-m", "cloudft.providers.local_runner", str(run_dir), plan.run_id],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env, cwd=str(run_dir),
        )
        log.close()
        return reg.update(plan.run_id, pid=proc.pid, status="running", meta={"runner": process_identity(proc.pid)})

    def status(self, run: RunRecord) -> RunRecord:
        if run.finished or run.pid is None:
            return run
        if not _is_runner(run):
            time.sleep(0.2)  # the runner may be writing its final status right now
            fresh = Registry().get(run.run_id)
            if fresh.finished:
                return fresh
            return Registry().update(run.run_id, status="failed", meta={"reason": "the local runner died"})
        return run

    def logs(self, run: RunRecord, follow: bool = False) -> Iterator[str]:
        path = Path(run.run_dir or "") / "log.txt"
        deadline_missing = time.time() + 10
        while not path.exists():
            if not follow or time.time() > deadline_missing:
                raise CloudftError(f"run {run.run_id} has no log at {path}",
                                   hint="the run folder was moved or deleted; `cloudft status RUN` shows the run")
            time.sleep(0.1)
        with open(path, "r", encoding="utf-8", errors="replace") as fh:
            buf = ""
            while True:
                chunk = fh.readline()
                if chunk:
                    buf += chunk
                    if buf.endswith("\n"):
                        yield buf.rstrip("\n")
                        buf = ""
                    continue
                if not follow:
                    break
                run = self.status(Registry().get(run.run_id))
                if run.finished:
                    rest = fh.read()
                    for line in (buf + rest).splitlines():
                        yield line
                    break
                time.sleep(0.2)

    def stop(self, run: RunRecord) -> RunRecord:
        """Signal the run's process group, only after checking that the process with the recorded id is still
        this run's runner (after a reboot the id may belong to anything)."""
        if run.finished:
            return run
        if run.pid and _is_runner(run):
            _signal_group(run.pid, signal.SIGTERM)
            deadline = time.time() + STOP_GRACE_S + 10
            while time.time() < deadline and _is_runner(run):
                time.sleep(0.2)
            if _is_runner(run):
                _signal_group(run.pid, signal.SIGKILL)
        rec = Registry().get(run.run_id)
        if not rec.finished:
            rec = Registry().update(run.run_id, status="stopped")
        return rec

    def artifacts(self, run: RunRecord, dest: Optional[Path] = None) -> Path:
        run_dir = Path(run.run_dir or "")
        stages = self.handle(run).stages
        if not stages:
            return run_dir
        out = run_dir / stages[-1] / "output"
        if not out.is_dir():
            raise CloudftError(f"{run.run_id} has no outputs yet ({run.status}): {out} does not exist",
                               hint=f"see what happened with `cloudft logs {run.run_id}`")
        if dest is not None:
            import shutil

            shutil.copytree(out, Path(dest), dirs_exist_ok=True)
            return Path(dest)
        return out


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


def _is_runner(run: RunRecord) -> bool:
    """True while the process recorded for `run` is alive and is the run's runner: the same command line and
    start time as recorded at submit (records from before that: a local_runner command line for this run id)."""
    if not run.pid or not _alive(run.pid):
        return False
    now = process_identity(run.pid)
    if now is None:
        return False
    recorded = run.meta.get("runner")
    if recorded:
        # The start time (with the boot id) names one process for good: a later process with the same id has
        # another. The command line is not compared: it is recorded right after fork, possibly before the exec.
        return now["start"] == recorded.get("start")
    return "cloudft.providers.local_runner" in now["cmdline"] and run.run_id in now["cmdline"]


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass  # it ended meanwhile
    except PermissionError as exc:
        raise CloudftError(f"not allowed to signal process group {pid} ({exc.strerror})",
                           hint="stop it as the user that started it") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True
