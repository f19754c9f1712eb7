"""Local deployments: an OpenAI-compatible server on this machine, in the background like a local run.

`deploy` decides how the run can be served here (cloudft.serving.compat: vLLM with the SageMaker container's LoRA
settings when vLLM and a GPU are here, else the transformers server), refuses before starting anything when it
cannot, merges the adapter with train_entry's merge where that is how it must be served, starts the server in its
own session, waits until it answers /health, and records the endpoint under CLOUDFT_HOME/endpoints/NAME/:

    endpoint.json   the record: url, model names, pid, engine, mode
    server.json     the transformers server's config (cloudft.serving.server.ServerConfig)
    server.log      everything the server printed
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from pydantic import BaseModel, ConfigDict

from ..errors import CloudftError, MissingExtraError
from ..paths import home
from ..processes import alive, process_identity, same_process, stop_group
from .compat import check_run, vllm_command, vllm_flags
from .textgen import adapter_base

if TYPE_CHECKING:
    from ..handles import RunHandle
    from ..registry import RunRecord

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
STOP_GRACE_S = 10


class LocalEndpoint(BaseModel):
    """The record of one local deployment."""

    model_config = ConfigDict(extra="forbid")

    name: str
    run_id: str
    url: str
    model: str
    base_model_name: Optional[str] = None
    engine: str
    mode: str
    pid: int
    process: Optional[dict] = None  # the server's identity (cloudft.processes): a later process with its pid is not it
    log: str
    created: float

    @property
    def running(self) -> bool:
        return same_process(self.pid, self.process) if self.process else alive(self.pid)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


def endpoint_dir(name: str) -> Path:
    if not NAME.match(name):
        raise CloudftError(f"invalid endpoint name '{name}'",
                           hint="1-63 characters: letters, digits, '.', '_' or '-', starting with a letter or digit")
    return home() / "endpoints" / name


def find_endpoint(name: str) -> Optional[LocalEndpoint]:
    """The local endpoint called `name`, if deploy recorded one."""
    path = endpoint_dir(name) / "endpoint.json"
    if not path.is_file():
        return None
    return LocalEndpoint.model_validate_json(path.read_text())


def local_endpoints() -> list[str]:
    """Names of the local endpoints deploy recorded."""
    root = home() / "endpoints"
    return sorted(p.parent.name for p in root.glob("*/endpoint.json")) if root.is_dir() else []


def _known_hint() -> str:
    names = local_endpoints()
    return f"local endpoints: {', '.join(names)}" if names else "`cloudft deploy RUN --provider local` creates one"


def free_port(host: str) -> int:
    """A port the OS says is free now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def request_json(url: str, body: Optional[dict] = None, timeout: float = 600) -> dict[str, Any]:
    """GET (or POST `body` to) `url`; the JSON answer, or a CloudftError with the server's message."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"},
                                 method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read().decode("utf-8", errors="replace"))
    except urllib.error.HTTPError as exc:
        raw = exc.read().decode("utf-8", errors="replace")
        try:
            err = json.loads(raw)
            message = (err.get("error") or {}).get("message") or err.get("message") or raw
        except (ValueError, AttributeError):
            message = raw
        raise CloudftError(f"{url} answered HTTP {exc.code}: {message[:500]}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CloudftError(f"{url} is not answering ({reason})",
                           hint="`cloudft deploy RUN --provider local` starts it again") from None


def _merged_weights(output: Path, base: str) -> Path:
    """The run's merged weights: the ones training wrote (export.merge), else merged here now with train_entry's
    merge (written next to the adapter, so a second deploy reuses them)."""
    merged = output / "merged"
    if (merged / "config.json").is_file():
        return merged
    tmp = output / "merged.partial"
    proc = subprocess.run([sys.executable, "-m", "train_entry", "merge", "--adapter", str(output), "--out", str(tmp),
                           "--base", base], capture_output=True, text=True)
    if proc.returncode != 0:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        last = ((proc.stdout + proc.stderr).strip().splitlines() or [""])[-1]
        raise CloudftError(f"merging the adapter in {output} failed (exit {proc.returncode}): {last}",
                           hint="`python -m train_entry merge --adapter ADAPTER --out DIR` shows the whole error")
    tmp.rename(merged)
    return merged


def deploy_local(run: "RunRecord", handle: "RunHandle", output: Path, *, endpoint_name: Optional[str] = None,
                 host: str = "127.0.0.1", port: Optional[int] = None, timeout: float = 900) -> dict[str, Any]:
    """Serve the run's output folder `output` on this machine (see the module docstring); returns what deploy
    prints: url, base_url, model names, engine, mode, pid, log."""
    decision, served = check_run("local", handle, run.run_id)
    if decision.target.engine == "transformers":
        for module, extra in (("fastapi", "serve"), ("uvicorn", "serve"), ("transformers", "train"), ("peft", "train")):
            if importlib.util.find_spec(module) is None:
                raise MissingExtraError(extra, module)
    name = endpoint_name or re.sub(r"[^A-Za-z0-9_.-]", "-", f"cft-{run.run_id}")[:63]
    folder = endpoint_dir(name)
    known = find_endpoint(name)
    if known is not None and known.running:
        raise CloudftError(f"endpoint '{name}' is already serving at {known.base_url} (run {known.run_id})",
                           hint=f"`cloudft undeploy {name}` first, or pass --endpoint-name")
    base = adapter_base(output, handle.base_model)
    served_name = run.name
    base_name = f"{run.name}-base" if decision.mode == "adapter" else None
    if decision.mode == "adapter":
        weights, adapter = base, str(output)
    elif decision.mode == "merged":
        weights, adapter = str(_merged_weights(output, base)), None
    else:
        weights, adapter = str(output), None
    port = port or free_port(host)
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "server.log"
    if decision.target.engine == "vllm":
        flags = vllm_flags(decision, served, handle.serve, model=weights, name=served_name, adapter=adapter,
                           base_name=base_name)
        command = vllm_command(flags, host, port)
    else:
        from .server import ServerConfig

        cfg = ServerConfig(name=served_name, base_name=base_name, weights=weights, adapter=adapter, host=host,
                           port=port, limits=handle.serve)
        (folder / "server.json").write_text(cfg.model_dump_json(indent=2))
        command = [sys.executable, "-m", "cloudft.serving.server", str(folder / "server.json")]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=str(folder),
                                env=dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false"))
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    record = LocalEndpoint(name=name, run_id=run.run_id, url=url, model=served_name, base_model_name=base_name,
                           engine=decision.target.engine, mode=decision.mode, pid=proc.pid,
                           process=process_identity(proc.pid), log=str(log_path),
                           created=time.time())
    (folder / "endpoint.json").write_text(record.model_dump_json(indent=2))
    _wait_ready(record, proc, timeout)
    return {"endpoint": name, "url": url, "base_url": record.base_url, "model": served_name,
            "base_model_name": base_name, "engine": record.engine, "mode": record.mode, "serves": decision.summary(),
            "pid": proc.pid, "log": str(log_path), "base_model": base, "weights": weights,
            "adapter": str(output) if handle.artifact == "adapter" else None,
            "invoke": f"cloudft invoke {name} --prompt '...'", "undeploy": f"cloudft undeploy {name}"}


def _wait_ready(record: LocalEndpoint, proc: subprocess.Popen, timeout: float) -> None:
    """Until GET /health answers; a server that exits or does not answer in time is reported with its log."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            tail = _tail(Path(record.log))
            undeploy_local(record.name, missing_ok=True)
            raise CloudftError(f"the server for '{record.name}' exited (code {proc.returncode}) before it answered:\n"
                               + tail)
        try:
            with urllib.request.urlopen(f"{record.url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.3)
    tail = _tail(Path(record.log))
    undeploy_local(record.name, missing_ok=True)
    raise CloudftError(f"the server for '{record.name}' did not answer within {timeout:.0f} s:\n{tail}",
                       hint="a large model loads slowly on CPU: pass a longer --timeout")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def invoke_local(name: str, prompt: str, max_new_tokens: int = 128, base: bool = False,
                 chat: bool = False) -> str:
    """One greedy request to a local endpoint; the generated text."""
    ep = find_endpoint(name)
    if ep is None:
        raise CloudftError(f"no local endpoint '{name}'", hint=_known_hint())
    model = ep.model
    if base:
        if not ep.base_model_name:
            raise CloudftError(f"endpoint '{name}' serves {ep.mode} weights, not an adapter on a base: there is no "
                               "bare base to ask")
        model = ep.base_model_name
    if chat:
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_new_tokens,
                "temperature": 0}
        answer = request_json(f"{ep.base_url}/chat/completions", body)
        return answer["choices"][0]["message"]["content"]
    body = {"model": model, "prompt": prompt, "max_tokens": max_new_tokens, "temperature": 0}
    return request_json(f"{ep.base_url}/completions", body)["choices"][0]["text"]


def undeploy_local(name: str, missing_ok: bool = False) -> None:
    """Stop the endpoint's server (its whole process group) and forget the endpoint."""
    import shutil

    ep = find_endpoint(name)
    if ep is None:
        if missing_ok:
            return
        raise CloudftError(f"no local endpoint '{name}'", hint=_known_hint())
    stop_group(ep.pid, STOP_GRACE_S, still=lambda: ep.running)
    shutil.rmtree(endpoint_dir(name), ignore_errors=True)
