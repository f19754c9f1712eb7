"""`cloudft plan --provider aws|azure --json` wall time (target < 1 s) and no heavy imports; prints the estimator's
validation errors. Run: .venv/bin/python benchmarks/planner_plan_speed.py"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("cloudft")
HEAVY = ("torch", "transformers", "sagemaker", "azure.ai.ml", "boto3")
TARGET_S = 1.0


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "job.yaml"
        spec.write_text(f"""name: bench
base_model: meta-llama/Llama-3.1-8B-Instruct
stages: [sft]
data: {{train: {REPO / 'examples/data/quickstart.jsonl'}}}
aws: {{bucket: b, role_arn: "arn:aws:iam::123456789012:role/r"}}
azure: {{subscription_id: "00000000-0000-0000-0000-000000000000", resource_group: rg, workspace: ws}}
""")
        env = {"CLOUDFT_HOME": tmp, "HF_HUB_OFFLINE": "1", "PATH": str(CLI.parent)}
        worst = 0.0
        for provider in ("aws", "azure"):
            for _ in range(3):
                t0 = time.perf_counter()
                out = subprocess.run([str(CLI), "plan", str(spec), "--provider", provider, "--json"],
                                     capture_output=True, text=True, env=env)
                dt = time.perf_counter() - t0
                if out.returncode:
                    print(f"{provider}: failed: {out.stderr.strip()}")
                    break
                worst = max(worst, dt)
            else:
                plan = json.loads(out.stdout)
                print(f"{provider}: {dt:.2f} s  instance {plan['instance']['type']}  "
                      f"peak {plan['memory']['peak_gb_per_device']} GB  cost ${plan['cost']['on_demand_usd']}")
        imp = subprocess.run([sys.executable, "-X", "importtime", "-c",
                              "from cloudft.cli.main import main; main(['plan', %r, '--provider', 'aws', '--json'])"
                              % str(spec)], capture_output=True, text=True, env=env)
        heavy = sorted({line.split("|")[-1].strip() for line in imp.stderr.splitlines()
                        if line.startswith("import time:") and line.split("|")[-1].strip().split(".")[0] in
                        {h.split(".")[0] for h in HEAVY} and line.split("|")[-1].strip() in HEAVY})
    from cloudft.planner.validation import evaluate, summary

    stats = summary(evaluate())
    print(f"worst plan time {worst:.2f} s (target < {TARGET_S} s); heavy imports: {heavy or 'none'}")
    print("memory estimator:", json.dumps(stats))
    return 0 if worst < TARGET_S and not heavy else 1


if __name__ == "__main__":
    sys.exit(main())
