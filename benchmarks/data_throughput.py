"""Data pipeline throughput: validate + prepare N synthetic records vs loading and mapping them with `datasets`.

    .venv/bin/python benchmarks/data_throughput.py                 # 1M records (a few minutes on 2 cores)
    .venv/bin/python benchmarks/data_throughput.py --records 200000 --near-dup-sample 20000

Each side runs in its own subprocess on the same JSONL file, so peak RSS is measured per side.
- cloudft: `cloudft.data.store.prepare_files` (read, validate, normalise, exact dedup, hash split 5% validation,
  canonical JSONL + manifest + version); near-duplicate MinHash/LSH is measured separately on a sample.
- baseline: `datasets.load_dataset("json")` + `.map()` with the same normalisation (prompt/completion checks),
  in a fresh cache directory (so its Arrow conversion is counted, as on first use).
Prints records/s for both, the ratio, and peak RSS. Targets: ratio >= 3, cloudft peak RSS <= 1 GB.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have an "
         "they you were her she there would their we him been has when who will more no if out so said what up its "
         "about into than them can only other new some could time these two may then do first any my now such like "
         "our over man me even most made after also did many before must through back years where much your way "
         "well down should because each just those people how too little state good very make world still own see "
         "men work long get here between both life being under never day same another know while last might us "
         "great old year off come since against go came right used take three model data train token loss").split()


def generate(path: Path, n: int, seed: int = 0) -> None:
    """n prompt/completion records: prompts ~10-120 words, completions ~20-400 words (log-normal-ish)."""
    rng = random.Random(seed)
    choice, lognorm = rng.choices, rng.lognormvariate
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            p = max(5, min(120, int(lognorm(3.2, 0.6))))
            c = max(10, min(400, int(lognorm(4.3, 0.7))))
            rec = {"prompt": f"[{i}] " + " ".join(choice(WORDS, k=p)) + "?", "completion": " " + " ".join(choice(WORDS, k=c)) + "."}
            fh.write(json.dumps(rec) + "\n")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_cloudft(path: Path, out: Path, near_dup: float | None) -> dict:
    sys.path.insert(0, str(REPO))
    from cloudft.data.pipeline import Options
    from cloudft.data.store import prepare_files

    t = time.perf_counter()
    summary, manifest = prepare_files([(path, "train")], Options(near_dup=near_dup, holdout={"validation": 0.05}),
                                      out)
    dt = time.perf_counter() - t
    return {"seconds": dt, "records": summary.records_in, "out": summary.records_out, "peak_rss_mb": _peak_rss_mb()}


def run_datasets(path: Path, cache: Path) -> dict:
    from datasets import disable_progress_bars, load_dataset

    disable_progress_bars()

    def normalise(rec: dict) -> dict:
        prompt, completion = rec.get("prompt"), rec.get("completion")
        ok = isinstance(prompt, str) and isinstance(completion, str) and bool(prompt.strip()) and bool(completion.strip())
        return {"prompt": prompt, "completion": completion, "ok": ok}

    t = time.perf_counter()
    ds = load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))
    ds = ds.map(normalise)
    n = len(ds)
    dt = time.perf_counter() - t
    return {"seconds": dt, "records": n, "peak_rss_mb": _peak_rss_mb()}


def _child(args: list[str]) -> dict:
    r = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=REPO)
    if r.returncode:
        raise SystemExit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--near-dup-sample", type=int, default=50_000, help="records for the MinHash near-dup figure")
    ap.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, path, work = args.child[:3]
        if kind == "cloudft":
            near = float(args.child[3]) if len(args.child) > 3 else None
            print(json.dumps(run_cloudft(Path(path), Path(work), near)))
        else:
            print(json.dumps(run_datasets(Path(path), Path(work))))
        return
    with tempfile.TemporaryDirectory(prefix="cloudft-bench-") as tmp:
        tmp = Path(tmp)
        data = tmp / "synthetic.jsonl"
        t = time.perf_counter()
        generate(data, args.records)
        size_mb = data.stat().st_size / 1e6
        print(f"generated {args.records:,} records ({size_mb:,.0f} MB) in {time.perf_counter() - t:.1f}s")
        ours = _child(["--child", "cloudft", str(data), str(tmp / "out")])
        base = _child(["--child", "datasets", str(data), str(tmp / "hf-cache")])
        sample = tmp / "sample.jsonl"
        generate(sample, args.near_dup_sample, seed=1)
        near = _child(["--child", "cloudft", str(sample), str(tmp / "out-near"), "0.9"])
        plain = _child(["--child", "cloudft", str(sample), str(tmp / "out-plain")])
    rate = lambda r: r["records"] / r["seconds"]  # noqa: E731
    print(f"cloudft validate+prepare: {rate(ours):>10,.0f} records/s  ({ours['seconds']:.1f}s, "
          f"peak RSS {ours['peak_rss_mb']:,.0f} MB)")
    print(f"datasets load+map:        {rate(base):>10,.0f} records/s  ({base['seconds']:.1f}s, "
          f"peak RSS {base['peak_rss_mb']:,.0f} MB)")
    print(f"ratio (cloudft / datasets): {rate(ours) / rate(base):.2f}x   target >= 3x; "
          f"cloudft peak RSS target <= 1024 MB: {'ok' if ours['peak_rss_mb'] <= 1024 else 'OVER'}")
    print(f"near-dup MinHash/LSH on {args.near_dup_sample:,} records: {rate(near):,.0f} records/s "
          f"(without: {rate(plain):,.0f} records/s, ratio {rate(near) / rate(plain):.2f}x)")


if __name__ == "__main__":
    main()
