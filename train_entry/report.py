"""The run report: `report.md` plus PNG plots (matplotlib, Agg backend) in the output dir.

Plots come from `train_log.jsonl` (one JSON object per trainer log: step, loss, eval_loss, DPO's
rewards/margins, ...): `loss.png` (training and validation loss over steps) and, when the method logs them,
`reward_margins.png`. matplotlib is optional (train_entry/requirements-report.txt): without it the report has no
plots and says why.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

from .events import log

LOSS_PNG, MARGINS_PNG = "loss.png", "reward_margins.png"

HEADLINES = [  # (metric key, label) in the order the report lists them
    ("val_loss_base", "validation loss, base"), ("val_loss_tuned", "validation loss, tuned"),
    ("val_ppl_base", "validation perplexity, base"), ("val_ppl_tuned", "validation perplexity, tuned"),
    ("pref_accuracy", "held-out preference accuracy"), ("reward_margin", "held-out reward margin"),
    ("logp_pref_accuracy_base", "chosen more likely than rejected, base"),
    ("logp_pref_accuracy_tuned", "chosen more likely than rejected, tuned"),
    ("rl_reward_base", "reward-model score of generations, base"),
    ("rl_reward_tuned", "reward-model score of generations, tuned"),
    ("rougeL_base", "ROUGE-L F1 vs references, base"), ("rougeL_tuned", "ROUGE-L F1 vs references, tuned"),
    ("bleu_base", "BLEU vs references, base"), ("bleu_tuned", "BLEU vs references, tuned"),
    ("train_loss", "mean training loss"), ("train_runtime", "training time (s)"),
]
EXPORTS = [
    ("merged_size_mb", "merged weights size (MiB)"), ("merged_val_loss", "merged weights validation loss"),
    ("full_size_mb", "full-precision weights size (MiB)"), ("quantized_size_mb", "quantized copy size (MiB)"),
    ("quantized_val_loss", "quantized copy validation loss"),
    ("quantized_val_loss_change", "validation-loss change from quantization"),
]


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one logged metric, finite values only."""
    pts = [(r["step"], float(r[key])) for r in rows
           if isinstance(r.get(key), (int, float)) and math.isfinite(float(r[key]))]
    return [p[0] for p in pts], [p[1] for p in pts]


def plotting_unavailable() -> Optional[str]:
    """Why the report cannot draw plots (matplotlib missing or broken in this environment), or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401 - what _plot uses
    except ImportError as exc:
        return (f"matplotlib cannot be imported ({type(exc).__name__}: {exc}); install it "
                "(train_entry/requirements-report.txt) or train on the train_entry image (train_entry/Dockerfile)")
    return None


def _plot(path: Path, title: str, ylabel: str, lines: list[tuple[str, list[float], list[float]]]) -> Optional[Path]:
    lines = [line for line in lines if line[1]]
    if not lines or plotting_unavailable():
        return None
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, xs, ys in lines:
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_losses(rows, out_dir: Path) -> Optional[Path]:
    return _plot(out_dir / LOSS_PNG, "Loss", "loss",
                 [("train", *series(rows, "loss")), ("validation", *series(rows, "eval_loss"))])


def plot_margins(rows, out_dir: Path) -> Optional[Path]:
    return _plot(out_dir / MARGINS_PNG, "Reward margins (chosen - rejected)", "margin",
                 [("train", *series(rows, "rewards/margins")),
                  ("validation", *series(rows, "eval_rewards/margins"))])


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _cell(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return (text[:limit] + "...") if len(text) > limit else text.replace("|", "\\|")


def write_report(ctx, numbers: dict[str, Any], generations: list[dict[str, str]], notes: list[str]) -> Path:
    """Write report.md (+ plots) into the output dir; returns its path."""
    cfg, out = ctx.cfg, ctx.layout.output_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = read_log(out / "train_log.jsonl")
    plots = [p for p in (plot_losses(rows, out), plot_margins(rows, out)) if p is not None]
    no_plots = plotting_unavailable() if any(series(rows, k)[0] for k in ("loss", "eval_loss")) else None
    from .artifact import label

    lines = [f"# {cfg.name}: stage {cfg.stage} ({cfg.method})", "",
             f"- base model: `{cfg.base_model}`", f"- PEFT: {cfg.peft.type}"]
    for key, text in (("init_model", "started from the full weights in"),
                      ("init_adapter", "continued the adapter in")):
        if numbers.get(key):
            lines.append(f"- {text} `{numbers[key]}`")
    if numbers.get("artifact"):
        lines.append(f"- output: {label(numbers)} in `{out}`")
    else:
        lines.append(f"- output: `{out}`")
    lines.append("")
    head = [(label, numbers[k]) for k, label in HEADLINES if k in numbers]
    if head:
        lines += ["## Results", "", "| metric | value |", "|---|---|"]
        lines += [f"| {label} | {_fmt(v)} |" for label, v in head] + [""]
    exports = [(label, numbers[k]) for k, label in EXPORTS if k in numbers]
    if exports:
        lines += ["## Exports", "", "| export | value |", "|---|---|"]
        lines += [f"| {label} | {_fmt(v)} |" for label, v in exports]
        for key in ("merged_dir", "quantized_dir"):
            if key in numbers:
                lines.append(f"\n- {key.replace('_dir', '')}: `{numbers[key]}`")
        lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    elif no_plots:
        log(f"warning: the report has no plots: {no_plots}")
        lines += ["## Plots", "", f"No plots: {no_plots}.", ""]
    if generations:
        lines += ["## Generations (greedy)", "", "| prompt | base | tuned |", "|---|---|---|"]
        lines += [f"| {_cell(g['prompt'])} | {_cell(g['base'])} | {_cell(g['tuned'])} |" for g in generations]
        lines.append("")
    notes = ([numbers["note"]] if numbers.get("note") else []) + list(notes)
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    path = out / "report.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
    return path
