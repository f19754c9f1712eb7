"""Run ids are looked up literally, `cloudft stop` signals only the run's own runner (never whatever process
has that id now), and `artifacts --dest` does not write over files without --overwrite."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cloudft.errors import CloudftError
from cloudft.providers.local import LocalProvider, process_identity
from cloudft.registry import Registry, RunRecord


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cloudft.cli.main", *args], capture_output=True, text=True,
                          timeout=120)


def add_run(run_id: str, **fields) -> RunRecord:
    return Registry().add(RunRecord(run_id=run_id, name="demo", provider="local", status="running", **fields))


def spawn(*argv: str) -> subprocess.Popen:
    """A process in its own group (as LocalProvider.submit starts the runner)."""
    return subprocess.Popen(list(argv), start_new_session=True, stdin=subprocess.DEVNULL)


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- lookup -----------------------------------------------------------------------------------------------------

def test_run_id_prefix_is_literal():
    add_run("demo-20250101-000000-ab12")
    add_run("demo-20250101-000000-cd34")
    reg = Registry()
    assert reg.get("demo-20250101-000000-ab").run_id == "demo-20250101-000000-ab12"
    for pattern in ("%", "_", "demo%", "demo-20250101-000000-__12", "DEMO-20250101-000000-ab12", " "):
        with pytest.raises(CloudftError) as info:
            reg.get(pattern)
        assert "no run" in info.value.message
    with pytest.raises(CloudftError, match="ambiguous"):
        reg.get("demo-")


def test_stop_percent_matches_no_run():
    add_run("only-20250101-000000-ab12", pid=None)
    proc = cli("stop", "%")
    assert proc.returncode == 1 and "no run '%'" in proc.stderr + proc.stdout
    assert Registry().get("only-20250101-000000-ab12").status == "running"


# -- stop checks the process is the runner ---------------------------------------------------------------------

def test_stop_spares_a_process_that_took_over_the_pid(processes):
    stranger = spawn("sleep", "60")
    processes.append(stranger)
    time.sleep(0.1)
    me = process_identity(stranger.pid)
    # what submit recorded for the runner that had this pid before a reboot
    runner = {"cmdline": [sys.executable, "-m", "cloudft.providers.local_runner", "/x", "old-run"],
              "start": "another-boot:12345"}
    add_run("old-run", pid=stranger.pid, meta={"runner": runner})
    proc = cli("stop", "old-run")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert stranger.poll() is None, "cloudft stop killed a process that is not the run's runner"
    assert process_identity(stranger.pid) == me
    rec = Registry().get("old-run")
    assert rec.status == "failed" and "runner" in rec.meta["reason"]


def test_stop_spares_it_for_records_without_an_identity(processes):
    stranger = spawn("sleep", "60")
    processes.append(stranger)
    add_run("legacy-run", pid=stranger.pid)
    rec = LocalProvider().stop(Registry().get("legacy-run"))
    assert stranger.poll() is None and rec.status == "stopped"


def test_stop_ends_the_runner_it_recorded(processes):
    runner = spawn(sys.executable, "-c", "import time; time.sleep(60)", "cloudft.providers.local_runner",
                   "/runs/live-run", "live-run")
    processes.append(runner)
    deadline = time.time() + 10
    while "cloudft.providers.local_runner" not in (process_identity(runner.pid) or {}).get("cmdline", []):
        assert time.time() < deadline
        time.sleep(0.05)
    add_run("live-run", pid=runner.pid, meta={"runner": process_identity(runner.pid)})
    provider = LocalProvider()
    assert provider.status(Registry().get("live-run")).status == "running"
    rec = provider.stop(Registry().get("live-run"))
    assert rec.status == "stopped"
    # gone (the provider reaps its own children, so the exit status is not ours to read)
    assert process_identity(runner.pid) is None


def test_process_identity_reads_command_line_and_start(processes):
    proc = spawn("sleep", "60")
    processes.append(proc)
    time.sleep(0.1)
    ident = process_identity(proc.pid)
    assert ident["cmdline"] == ["sleep", "60"] and ident["start"]
    assert ident == process_identity(proc.pid)  # stable for one process
    assert ident != process_identity(os.getpid())
    proc.kill()
    proc.wait()
    assert process_identity(proc.pid) is None


# -- artifacts --dest -------------------------------------------------------------------------------------------

def _finished_run(tmp_path: Path) -> Path:
    out = tmp_path / "runs" / "done-run" / "0-sft" / "output"
    out.mkdir(parents=True)
    (out / "metrics.json").write_text('{"eval_loss": 1.0}')
    (out / "adapter_config.json").write_text("{}")
    Registry().add(RunRecord(run_id="done-run", name="done", provider="local", status="completed",
                             run_dir=str(tmp_path / "runs" / "done-run"), meta={"stages": ["0-sft"]}))
    return out


def test_artifacts_dest_refuses_to_overwrite(tmp_path):
    _finished_run(tmp_path)
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "metrics.json").write_text("my own numbers")
    proc = cli("artifacts", "done-run", "--dest", str(dest))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "metrics.json" in proc.stderr + proc.stdout and "--overwrite" in proc.stderr + proc.stdout
    assert (dest / "metrics.json").read_text() == "my own numbers"
    assert not (dest / "adapter_config.json").exists()
    proc = cli("artifacts", "done-run", "--dest", str(dest), "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert (dest / "metrics.json").read_text() == '{"eval_loss": 1.0}'


def test_artifacts_into_a_new_directory(tmp_path):
    _finished_run(tmp_path)
    dest = tmp_path / "new" / "place"
    proc = cli("artifacts", "done-run", "--dest", str(dest))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["adapter_config.json", "metrics.json"]


def test_an_identity_recorded_before_the_exec_still_names_the_runner(processes):
    """Submit records the runner right after Popen, which may be before the child's exec: its command line then
    is still the parent's. The start time is what names the process; a status check must not call it dead."""
    from cloudft.providers.local import _is_runner

    runner = spawn(sys.executable, "-c", "import time; time.sleep(60)")
    processes.append(runner)
    time.sleep(0.1)
    recorded = {**process_identity(runner.pid), "cmdline": [sys.executable, "-m", "cloudft.cli.main", "submit"]}
    add_run("fresh-run", pid=runner.pid, meta={"runner": recorded})
    assert _is_runner(Registry().get("fresh-run"))
    assert LocalProvider().status(Registry().get("fresh-run")).status == "running"
