"""Latency of the local OpenAI-compatible server (cloudft.serving.server) on this machine, against the same greedy
generation in-process (the baseline, measured in the same run): what HTTP + validation + the server add.

Builds tiny Llama models on the spot (train_entry.tiny) with a LoRA adapter, serves each with uvicorn in a thread,
and times POST /v1/completions (16 and 64 new tokens, greedy) and in-process TextModel.generate with the same ids.

    .venv/bin/python benchmarks/serve_latency.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZES = {"tiny (h64, 2 layers)": (64, 2), "small (h256, 4 layers)": (256, 4)}
PROMPT = "Compute 12 + 30. Then explain the steps you took to get the answer."


def _model(root: Path, hidden: int, layers: int) -> tuple[Path, Path]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from train_entry.tiny import build_tiny_model

    base = build_tiny_model(root / "base", data=[REPO / "examples/data/quickstart.jsonl"], hidden_size=hidden,
                            layers=layers)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    model.save_pretrained(root / "adapter")
    return base, root / "adapter"


def _serve(base: Path, adapter: Path):
    import uvicorn

    from cloudft.serving.server import Server, ServerConfig, create_app
    from cloudft.serving.textgen import load_text_model
    from cloudft.spec import ServeConfig

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = ServerConfig(name="m", weights=str(base), adapter=str(adapter), port=port, limits=ServeConfig())
    tm = load_text_model(cfg.weights, cfg.adapter)
    http = uvicorn.Server(uvicorn.Config(create_app(Server(cfg, tm)), host="127.0.0.1", port=port,
                                         log_level="warning"))
    threading.Thread(target=http.run, daemon=True).start()
    while not http.started:
        time.sleep(0.05)
    return http, tm, f"http://127.0.0.1:{port}/v1/completions"


def _post(url: str, tokens: int) -> dict:
    body = json.dumps({"prompt": PROMPT, "max_tokens": tokens, "temperature": 0}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as resp:
        return json.loads(resp.read())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    from train_entry.runtime import quiet_libraries

    quiet_libraries()
    import torch

    print(f"torch threads: {torch.get_num_threads()}; greedy, prompt of {len(PROMPT.split())} words; median of "
          f"{args.repeats}")
    print(f"{'model':<24} {'new tokens':>10} {'in-process s':>13} {'server s':>9} {'ratio':>6} {'server tok/s':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, (hidden, layers) in SIZES.items():
            base, adapter = _model(Path(tmp) / label.split()[0], hidden, layers)
            http, tm, url = _serve(base, adapter)
            ids = tm.encode(PROMPT)
            for tokens in (16, 64):
                _post(url, tokens)  # warm-up
                server, local, made = [], [], 0
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    tm.generate(ids, tokens)
                    local.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    made = _post(url, tokens)["usage"]["completion_tokens"]
                    server.append(time.perf_counter() - t0)
                s, b = statistics.median(server), statistics.median(local)
                print(f"{label:<24} {made:>10} {b:>13.3f} {s:>9.3f} {s / b:>6.2f} {made / s:>12.1f}")
            http.should_exit = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
