"""Does preference training move a model on real data? SFT then DPO on HH-RLHF, measured on held-out pairs.

Data: ../shared/data/hh-rlhf-harmless-base-test.jsonl.gz (2,312 pairs), normalised by cloudft's own `hh_rlhf`
reader (pairs it rejects are counted and written to quarantine.jsonl). A fixed held-out split: the pairs whose
prompt hashes lowest (sha256), 400 of them (>= 300); the rest train. By default each prompt is cut to its last
user turn (`--context full` keeps the dialog): the tiny model uses little context, and it quarters the compute.
A tiny Llama is built on the spot (train_entry/tiny.py: random weights, BPE tokenizer trained on the training split
only), then train_entry runs two stages through its own command line (`train_entry.cli.train`, a run config each):

1. SFT on the chosen dialogs of the training pairs (full fine-tuning: the base is random);
2. DPO on the training pairs from the SFT weights (full fine-tuning, reference log-probs precomputed from the SFT
   model; `--dpo-peft lora` trains an adapter whose disabled state is the reference).

Held-out figures, each with a 95% bootstrap interval over pairs: loss on the chosen answers (base → SFT → DPO);
preference accuracy, the share of pairs whose chosen answer has the higher log-probability (sum over the answer;
also per token); DPO's implicit reward margin beta * ((log p_dpo - log p_sft)(chosen) - (same)(rejected)) and how
often it is > 0; and why few pairs flip (SFT's margin against DPO's shift). Scoring uses
train_entry.evaluate.sequence_logps (what the run report uses). Writes outcome.json and outcome.png.

    python benchmarks/outcome.py [--out benchmarks/results]     # ~5-10 min on 2 shared CPU cores
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
HH = REPO.parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"


@dataclass
class Settings:
    """Everything that decides the outcome (recorded with the figures)."""

    heldout: int = 400
    context: str = "last_turn"  # last_turn: the prompt is the final user turn | full: the whole dialog before it
    sft_on: str = "dialog"  # dialog: loss on prompt + chosen answer | answer: loss on the chosen answer only
    vocab: int = 1000
    hidden: int = 64
    layers: int = 2
    max_length: int = 128
    sft_epochs: float = 2.0
    sft_lr: float = 2e-3
    dpo_peft: str = "none"  # none: full fine-tuning (reference log-probs precomputed) | lora: adapter, reference = adapter off
    dpo_epochs: float = 2.0
    dpo_lr: float = 1e-3
    dpo_r: int = 16
    beta: float = 0.005  # small: lets DPO move the log-probs far enough to show on held-out pairs (see README)
    batch: int = 16
    seed: int = 0
    bootstrap: int = 2000


# -- data --------------------------------------------------------------------------------------------

def load_pairs(path: Path, out: Path) -> tuple[list[dict[str, Any]], int]:
    """Canonical conversational pairs from the raw file; each rejected record is listed in quarantine.jsonl by its
    line in the source file, with the reason (the red-teaming text itself is not copied out of ../shared/data)."""
    from cloudft.data.formats import normalise
    from cloudft.data.problems import RecordError

    pairs, quarantined = [], []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            try:
                pairs.append(normalise(json.loads(line), "hh_rlhf"))
            except RecordError as exc:
                quarantined.append({"file": path.name, "line": line_no, "field": exc.field, "reason": exc.reason,
                                    "message": exc.message})
    (out / "quarantine.jsonl").write_text("".join(json.dumps(q) + "\n" for q in quarantined))
    return pairs, len(quarantined)


def last_turn(pair: dict[str, Any]) -> dict[str, Any]:
    """The pair with its prompt cut to the final user turn (the request the two answers respond to)."""
    return {**pair, "prompt": pair["prompt"][-1:]}


def split(pairs: list[dict[str, Any]], heldout: int) -> tuple[list[dict], list[dict]]:
    """(train, held-out): held-out = the pairs whose prompt hashes lowest; the same on every machine and run.
    Pairs that share a prompt fall on the same side."""
    def key(p: dict) -> str:
        return hashlib.sha256(json.dumps(p["prompt"], sort_keys=True).encode()).hexdigest()

    ordered = sorted(pairs, key=key)
    cut = heldout
    while cut < len(ordered) and key(ordered[cut]) == key(ordered[cut - 1]):
        cut += 1
    return ordered[cut:], ordered[:cut]


def sft_records(pairs: list[dict[str, Any]], on: str) -> list[dict[str, Any]]:
    """SFT data from the chosen answers: whole dialogs (`messages`, loss on every token) or prompt/completion."""
    if on == "dialog":
        return [{"messages": p["prompt"] + p["chosen"]} for p in pairs]
    return [{"prompt": p["prompt"], "completion": p["chosen"]} for p in pairs]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- training through train_entry ----------------------------------------------------------------------

def train_stage(work: Path, name: str, base: Path, method: str, data: Path, s: Settings) -> Path:
    """One train_entry stage from a run config, as a provider would run it; returns its output folder."""
    from train_entry.cli import train
    from train_entry.config import (DataConfig, EvalConfig, OutputsConfig, PeftConfig, RunConfig, TrackingConfig,
                                    TrainingConfig)

    sft = method == "sft"
    cfg = RunConfig(
        name=f"outcome-{name}", base_model=str(base), method=method,
        peft=PeftConfig(type="none") if sft or s.dpo_peft == "none" else PeftConfig(type="lora", r=s.dpo_r,
                                                                                    alpha=2 * s.dpo_r, dropout=0.0),
        data=DataConfig(train=str(data)),
        training=TrainingConfig(epochs=s.sft_epochs if sft else s.dpo_epochs, learning_rate=s.sft_lr if sft else s.dpo_lr,
                                per_device_batch_size=s.batch, max_length=s.max_length, beta=s.beta,
                                warmup_ratio=0.05, lr_scheduler="cosine", logging_steps=10, save_steps=10**9,
                                precision="fp32", seed=s.seed),
        tracking=TrackingConfig(tensorboard=False), eval=EvalConfig(enabled=False),
        outputs=OutputsConfig(output_dir=str(work / name / "output"), checkpoint_dir=str(work / name / "checkpoints")))
    path = cfg.write(work / name / "run.json")
    code = train(["--config", str(path)])
    if code != 0:
        raise SystemExit(f"outcome: train_entry {method} stage failed with exit code {code} (see the log above)")
    return work / name / "output"


# -- scoring -----------------------------------------------------------------------------------------

def load_models(base: Path, sft: Path, dpo: Path):
    """(base, SFT, DPO) models for scoring; a DPO adapter goes on the SFT weights."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from train_entry.modeling import is_adapter_dir

    def load(p: Path):
        return AutoModelForCausalLM.from_pretrained(str(p)).eval()

    tuned = PeftModel.from_pretrained(load(sft), str(dpo)).eval() if is_adapter_dir(dpo) else load(dpo)
    return load(base), load(sft), tuned


def score(models, tokenizer, pairs: list[dict], max_length: int) -> dict[str, dict[str, list]]:
    """Per held-out pair and model: (sum log p, tokens) of the chosen and of the rejected answer."""
    from train_entry.evaluate import completions, sequence_logps

    chosen = completions(pairs, "preference", tokenizer, "chosen")
    rejected = completions(pairs, "preference", tokenizer, "rejected")
    out = {}
    for name, model in zip(("base", "sft", "dpo"), models):
        out[name] = {"chosen": sequence_logps(model, tokenizer, chosen, max_length),
                     "rejected": sequence_logps(model, tokenizer, rejected, max_length)}
    return out


def bootstrap(values: list[float], n: int, rng: random.Random, stat=None) -> tuple[float, float, float]:
    """(point estimate, 2.5th, 97.5th percentile) of the mean (or `stat`) over pairs resampled with replacement."""
    stat = stat or (lambda xs: sum(xs) / len(xs))
    k = len(values)
    draws = sorted(stat([values[rng.randrange(k)] for _ in range(k)]) for _ in range(n))
    return stat(values), draws[int(0.025 * n)], draws[int(0.975 * n) - 1]


def wins(sc: dict[str, list]) -> list[float]:
    """Per pair: 1 when the chosen answer is the more likely, 0 when the rejected is, 0.5 on a tie (both answers
    cut off by max_length)."""
    return [1.0 if c[0] > r[0] else 0.5 if c[0] == r[0] else 0.0 for c, r in zip(sc["chosen"], sc["rejected"])]


def per_token(sc: dict[str, list]) -> dict[str, list]:
    """Mean log p per answer token instead of the sum (takes answer length out of the comparison)."""
    return {k: [(lp / n if n else 0.0, n) for lp, n in rows] for k, rows in sc.items()}


def nll_per_token(rows: list[tuple[float, int]]) -> list[tuple[float, int]]:
    return [(-s, t) for s, t in rows]


def figures(scores: dict, s: Settings) -> dict[str, Any]:
    """Held-out loss, preference accuracy, reward margins, each with its 95% bootstrap interval."""
    rng = random.Random(s.seed)
    out: dict[str, Any] = {"pairs": len(scores["base"]["chosen"])}

    def ratio(xs):  # token-weighted mean loss of the chosen answers
        return sum(a for a, _ in xs) / sum(t for _, t in xs)

    for name in ("base", "sft", "dpo"):
        sc = scores[name]
        losses = nll_per_token(sc["chosen"])
        out[f"loss_{name}"] = bootstrap(losses, s.bootstrap, rng, ratio)
        out[f"accuracy_{name}"] = bootstrap(wins(sc), s.bootstrap, rng)
        out[f"accuracy_per_token_{name}"] = bootstrap(wins(per_token(sc)), s.bootstrap, rng)
        out[f"margin_logp_{name}"] = bootstrap([c[0] - r[0] for c, r in zip(sc["chosen"], sc["rejected"])],
                                               s.bootstrap, rng)
    d, f = scores["dpo"], scores["sft"]
    margins = [s.beta * ((dc[0] - fc[0]) - (dr[0] - fr[0]))
               for dc, dr, fc, fr in zip(d["chosen"], d["rejected"], f["chosen"], f["rejected"])]
    out["reward_margin_dpo"] = bootstrap(margins, s.bootstrap, rng)
    out["reward_accuracy_dpo"] = bootstrap([1.0 if m > 0 else 0.0 for m in margins], s.bootstrap, rng)
    paired = [a - b for a, b in zip(wins(scores["dpo"]), wins(scores["sft"]))]
    out["accuracy_dpo_minus_sft"] = bootstrap(paired, s.bootstrap, rng)
    out["answers_cut_off"] = sum(1 for c, r in zip(d["chosen"], d["rejected"]) if c[1] == 0 or r[1] == 0)
    shorter = [1.0 if c[1] < r[1] else 0.0 for c, r in zip(scores["base"]["chosen"], scores["base"]["rejected"])]
    out["chosen_is_shorter"] = sum(shorter) / len(shorter)
    out["dpo_beats_sft"] = out["accuracy_dpo"][1] > out["accuracy_sft"][0]
    out["dpo_beats_sft_per_token"] = out["accuracy_per_token_dpo"][1] > out["accuracy_per_token_sft"][0]
    out.update(why(scores, margins, s.beta))
    out["_margins"] = margins
    out["_sft_margins"] = [c[0] - r[0] for c, r in zip(f["chosen"], f["rejected"])]
    return out


def correlation(xs: list[float], ys: list[float]) -> float:
    """Pearson's r (0 when either side is constant)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx, syy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
    return sxy / (sxx * syy) ** 0.5 if sxx and syy else 0.0


def why(scores: dict, margins: list[float], beta: float) -> dict[str, float]:
    """How far DPO moved the held-out log-probs against how far apart SFT already put the two answers.

    The raw preference accuracy compares sums of log p over answers of different lengths, so SFT's margin is
    mostly length x loss per token; DPO flips a pair only when its shift (reward margin / beta, in nats) exceeds it.
    """
    f = scores["sft"]
    sft_margin = [c[0] - r[0] for c, r in zip(f["chosen"], f["rejected"])]
    shift = [m / beta for m in margins]
    follows_length = [(m > 0) == (c[1] < r[1]) for m, c, r in zip(sft_margin, f["chosen"], f["rejected"])
                      if c[1] != r[1]]

    def median(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2]

    longer = [r[1] - c[1] for c, r in zip(f["chosen"], f["rejected"])]  # tokens the rejected answer has more
    return {"sft_margin_abs_median_nats": round(median([abs(m) for m in sft_margin]), 2),
            "corr_dpo_shift_sft_margin": round(correlation(shift, sft_margin), 3),
            "corr_dpo_shift_length_difference": round(correlation(shift, longer), 3),
            "dpo_shift_abs_median_nats": round(median([abs(x) for x in shift]), 2),
            "pairs_dpo_could_flip": round(sum(abs(x) > abs(m) for x, m in zip(shift, sft_margin)) / len(shift), 3),
            "sft_prefers_shorter_answer": round(sum(follows_length) / max(1, len(follows_length)), 3)}


# -- output ------------------------------------------------------------------------------------------

def plot(fig_path: Path, figs: dict[str, Any], logs: dict[str, list[dict]]) -> Path:
    """Accuracies with intervals; SFT margin against DPO's shift per held-out pair; training losses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    ax = axes[0]
    names, width = ["base", "sft", "dpo"], 0.38
    for k, (key, label, colour) in enumerate((("accuracy", "summed log p", "#4a7"),
                                              ("accuracy_per_token", "per-token log p", "#47c"))):
        vals = [figs[f"{key}_{n}"] for n in names]
        ax.bar([i + (k - 0.5) * width for i in range(3)], [v[0] for v in vals], width, label=label, color=colour,
               yerr=[[v[0] - v[1] for v in vals], [v[2] - v[0] for v in vals]], capsize=4)
    reward = figs["reward_accuracy_dpo"]
    ax.bar([3], [reward[0]], width, yerr=[[reward[0] - reward[1]], [reward[2] - reward[0]]], capsize=4,
           color="#c74", label="DPO implicit reward")
    ax.set_xticks(range(4), ["base", "SFT", "DPO", "DPO reward\n(vs SFT)"])
    ax.axhline(0.5, color="k", lw=0.8, ls=":")
    ax.set_ylim(0.3, 0.8)
    ax.set_title(f"held-out preference accuracy, {figs['pairs']} pairs (95% CI)")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[1]
    x, y = figs["_sft_margins"], [m / figs["beta"] for m in figs["_margins"]]
    ax.scatter(x, y, s=6, alpha=0.5, color="#47c")
    lim = max(abs(v) for v in x + y) if x else 1.0
    ax.plot([-lim, lim], [lim, -lim], color="r", lw=0.8, label="shift = -SFT margin (a flip needs more)")
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("SFT: log p(chosen) - log p(rejected), nats")
    ax.set_ylabel("DPO shift of that margin, nats")
    ax.set_title("why few pairs flip")
    ax.legend(loc="upper right", fontsize=8)
    for stage, rows in logs.items():
        pts = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        if pts:
            axes[2].plot([p[0] for p in pts], [p[1] for p in pts], label=f"{stage} training loss")
    axes[2].set_xlabel("step")
    axes[2].set_title("training loss")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(fig_path, dpi=90)
    plt.close(fig)
    return fig_path


def fmt(v: tuple[float, float, float], spec: str = ".3f") -> str:
    return f"{v[0]:{spec}} [{v[1]:{spec}}, {v[2]:{spec}}]"


def report(figs: dict[str, Any]) -> str:
    lines = [f"held-out pairs: {figs['pairs']} (chosen answer shorter in {figs['chosen_is_shorter']:.1%})",
             "", f"{'':28s}{'base':>26s}{'SFT':>26s}{'DPO':>26s}"]
    for key, label in (("loss", "loss on chosen answers"), ("accuracy", "preference accuracy"),
                       ("accuracy_per_token", "accuracy, per-token log p"),
                       ("margin_logp", "log p(chosen) - log p(rej.)")):
        lines.append(f"{label:28s}" + "".join(f"{fmt(figs[f'{key}_{n}']):>26s}" for n in ("base", "sft", "dpo")))
    lines += ["", f"DPO reward margin (beta-scaled, vs SFT): {fmt(figs['reward_margin_dpo'])}",
              f"DPO reward accuracy (margin > 0):         {fmt(figs['reward_accuracy_dpo'])}",
              f"accuracy DPO - SFT (paired):              {fmt(figs['accuracy_dpo_minus_sft'])}",
              f"DPO beats SFT (DPO's 95% CI above SFT's point estimate): {figs['dpo_beats_sft']} on the summed "
              f"log p, {figs['dpo_beats_sft_per_token']} per token",
              "", f"why: SFT's |log p margin| median {figs['sft_margin_abs_median_nats']} nats (it follows the "
              f"shorter answer in {figs['sft_prefers_shorter_answer']:.0%} of pairs); DPO's shift median "
              f"{figs['dpo_shift_abs_median_nats']} nats, correlated with SFT's margin (r = "
              f"{figs['corr_dpo_shift_sft_margin']}) and with how much longer the rejected answer is (r = "
              f"{figs['corr_dpo_shift_length_difference']}); pairs where the shift exceeds the margin: "
              f"{figs['pairs_dpo_could_flip']:.0%}"]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--data", type=Path, default=HH)
    for f in Settings.__dataclass_fields__.values():
        ap.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    args = ap.parse_args(argv)
    s = Settings(**{k: getattr(args, k) for k in Settings.__dataclass_fields__})
    if not args.data.is_file():
        print(f"outcome: {args.data} is not there (the public HH-RLHF file in ../shared/data beside the checkout)",
              file=sys.stderr)
        return 2
    started = time.time()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    import tempfile

    from train_entry.runtime import quiet_libraries

    quiet_libraries()
    pairs, quarantined = load_pairs(args.data, out)
    train_pairs, held = split(pairs, s.heldout)
    if s.context == "last_turn":
        train_pairs, held = [last_turn(p) for p in train_pairs], [last_turn(p) for p in held]
    with tempfile.TemporaryDirectory(prefix="outcome-") as tmp:
        work = Path(tmp)
        from train_entry.tiny import build_tiny_model, iter_texts

        data_dpo = write_jsonl(work / "pairs.jsonl", train_pairs)
        data_sft = write_jsonl(work / "chosen.jsonl", sft_records(train_pairs, s.sft_on))
        base = build_tiny_model(work / "base", texts=list(iter_texts([data_dpo])), vocab_size=s.vocab,
                                hidden_size=s.hidden, layers=s.layers, seed=s.seed)
        t0 = time.time()
        sft = train_stage(work, "sft", base, "sft", data_sft, s)
        t1 = time.time()
        dpo = train_stage(work, "dpo", sft, "dpo", data_dpo, s)
        t2 = time.time()
        from train_entry.modeling import load_tokenizer
        from train_entry.report import read_log

        tok = load_tokenizer(str(base))
        figs = figures(score(load_models(base, sft, dpo), tok, held, s.max_length), s)
        figs["beta"] = s.beta
        logs = {stage: read_log(work / stage / "output" / "train_log.jsonl") for stage in ("sft", "dpo")}
        plot(out / "outcome.png", figs, logs)
    margins = figs.pop("_margins")
    figs.pop("_sft_margins")
    doc = {"settings": asdict(s), "records": len(pairs) + quarantined, "quarantined": quarantined,
           "train_pairs": len(train_pairs), "heldout_pairs": len(held),
           "seconds": {"sft": round(t1 - t0, 1), "dpo": round(t2 - t1, 1), "total": round(time.time() - started, 1)},
           "cpu_count": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
           "figures": figs, "reward_margin_quantiles": [round(sorted(margins)[int(q * (len(margins) - 1))], 4)
                                                      for q in (0.05, 0.25, 0.5, 0.75, 0.95)]}
    (out / "outcome.json").write_text(json.dumps(doc, indent=2))
    print(report(figs))
    print(f"\n{len(pairs) + quarantined} records, {quarantined} quarantined ({out / 'quarantine.jsonl'}); "
          f"{len(train_pairs)} train / {len(held)} held-out pairs; SFT {doc['seconds']['sft']:.0f} s, "
          f"DPO {doc['seconds']['dpo']:.0f} s, total {doc['seconds']['total']:.0f} s on {os.cpu_count()} cores "
          f"(load {doc['load_average_1m']})")
    print(f"wrote {out / 'outcome.json'} and {out / 'outcome.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
