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
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from ..errors import CloudftError
from ..handles import LocalHandle
from ..processes import alive, process_identity, same_process, stop_group
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
        if run.pid:
            stop_group(run.pid, STOP_GRACE_S + 10, still=lambda: _is_runner(run))
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


    # -- serving: an OpenAI-compatible server on this machine (cloudft.serving.local) ------------------------
    def deploy(self, run: RunRecord, **options: Any) -> dict[str, Any]:
        """Serve RUN here, whichever provider trained it (a cloud run's outputs are downloaded first)."""
        from ..serving.local import deploy_local
        from . import get_provider

        trained_on = self if run.provider == self.name else get_provider(run.provider)
        run = trained_on.status(run)
        if run.status != "completed":
            raise CloudftError(f"run {run.run_id} is {run.status}; deploy a completed run",
                               hint=f"cloudft status {run.run_id}")
        handle = trained_on.handle(run)
        output = trained_on.artifacts(run)
        result = deploy_local(run, handle, Path(output), endpoint_name=options.get("endpoint_name"),
                              host=options.get("host") or "127.0.0.1", port=options.get("port"),
                              timeout=float(options.get("timeout") or 900))
        Registry().update(run.run_id, meta={"local_endpoint": result["endpoint"]})  # `cloudft status` shows it
        return result

    def invoke(self, endpoint: str, prompt: str, **options: Any) -> str:
        from ..serving.local import invoke_local

        return invoke_local(endpoint, prompt, max_new_tokens=int(options.get("max_new_tokens") or 128),
                            base=bool(options.get("base")), chat=bool(options.get("chat")))

    def undeploy(self, endpoint: str, **options: Any) -> None:
        from ..serving.local import find_endpoint, undeploy_local

        known = find_endpoint(endpoint)
        undeploy_local(endpoint)
        reg = Registry()
        if known is not None and reg.find(run_id=known.run_id):
            reg.update(known.run_id, meta={"local_endpoint": None})

    def smoke(self, run: RunRecord, deployed: dict[str, Any], prompt: str):
        """The endpoint's greedy answer against the same request through the adapter here, with PEFT."""
        from ..serving.smoke import SMOKE_TOKENS, compare_with_reference
        from ..serving.textgen import load_text_model
        from train_entry.runtime import quiet_libraries

        quiet_libraries()  # deploy's output stays readable
        ref = load_text_model(deployed["base_model"], deployed["adapter"]) if deployed.get("adapter") \
            else load_text_model(deployed["weights"])
        reference = ref.generate(ref.encode(prompt), SMOKE_TOKENS).text
        del ref
        report = compare_with_reference(prompt, lambda: self.invoke(deployed["endpoint"], prompt,
                                                                    max_new_tokens=SMOKE_TOKENS), reference)
        if report.ok or deployed.get("engine") != "vllm" or deployed.get("mode") != "adapter":
            return report
        # vLLM's kernels (bf16 on a GPU) need not pick the same greedy tokens as transformers here: fall back to
        # checking that the adapter, not the bare base, answered
        from ..serving.smoke import compare_with_base

        fallback = compare_with_base(self, deployed["endpoint"], prompt, has_base=True)
        return replace(fallback, detail=f"{fallback.detail} (vLLM's answer differs from transformers' here: "
                                        f"{report.detail})")


def _is_runner(run: RunRecord) -> bool:
    """True while the process recorded for `run` is alive and is the run's runner: the identity recorded at submit
    (records from before that: a local_runner command line for this run id)."""
    recorded = run.meta.get("runner")
    if recorded:
        return same_process(run.pid, recorded)
    now = process_identity(run.pid) if run.pid and alive(run.pid) else None
    return now is not None and "cloudft.providers.local_runner" in now["cmdline"] and run.run_id in now["cmdline"]
