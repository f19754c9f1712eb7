"""Training throughput: real (non-pad) tokens per second, three ways, in one run.

  (a) the common tutorial recipe: transformers `Trainer` + tokenizer `padding="max_length"` (2048)
      + `DataCollatorForLanguageModeling`
  (b) TRL `SFTTrainer` with its defaults (dynamic padding, no packing)
  (c) train_entry's SFT (best-fit-decreasing packing, padding-free rows, per-sample position_ids)

Same tiny model (built on the spot), same data (the chosen side of the real HH-RLHF file in ../shared/data),
same samples and so the same number of real tokens, one epoch each. Prints tokens/s, the ratios c/a and c/b,
the packing efficiency (real tokens / computed tokens), and, last, one JSON line.

    python benchmarks/train_throughput.py [--samples 96] [--max-length 2048]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
HH = REPO.parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"


def load_texts(n: int) -> list[str]:
    texts = []
    with gzip.open(HH, "rt", encoding="utf-8") as fh:
        for line in fh:
            texts.append(json.loads(line)["chosen"].strip())
            if len(texts) == n:
                break
    return texts


def timed_train(trainer) -> float:
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started


def common_args(out: Path, batch: int) -> dict:
    return dict(output_dir=str(out), per_device_train_batch_size=batch, num_train_epochs=1, learning_rate=1e-4,
                logging_steps=10_000, save_strategy="no", report_to=[], disable_tqdm=True, seed=0,
                dataloader_pin_memory=False)


def run_tutorial(model_dir: Path, texts: list[str], max_length: int, batch: int, out: Path):
    """(a) pad every sample to max_length."""
    from datasets import Dataset
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                              TrainingArguments)

    tok = AutoTokenizer.from_pretrained(model_dir)
    ds = Dataset.from_dict({"text": texts}).map(
        lambda b: tok(b["text"], padding="max_length", truncation=True, max_length=max_length),
        batched=True, remove_columns=["text"])
    real = sum(sum(m) for m in ds["attention_mask"])
    computed = len(ds) * max_length
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    trainer = Trainer(model=model, args=TrainingArguments(**common_args(out, batch)), train_dataset=ds,
                      data_collator=DataCollatorForLanguageModeling(tok, mlm=False))
    return timed_train(trainer), real, computed


def run_trl_default(model_dir: Path, texts: list[str], max_length: int, batch: int, out: Path):
    """(b) SFTTrainer defaults: dynamic padding to the longest sample of each batch."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    args = SFTConfig(**common_args(out, batch), max_length=max_length, bf16=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts}),
                         processing_class=tok)
    lengths = [len(x) for x in trainer.train_dataset["input_ids"]]
    computed = 0
    loader = trainer.get_train_dataloader()
    for b in loader:
        computed += b["input_ids"].numel()
    return timed_train(trainer), sum(lengths), computed


def run_train_entry(model_dir: Path, data: Path, max_length: int, batch: int, out: Path):
    """(c) train_entry's own SFT trainer, built from a run config like every provider writes."""
    from train_entry.config import DataConfig, OutputsConfig, PeftConfig, RunConfig, TrainingConfig
    from train_entry.context import TrainContext
    from train_entry.layout import resolve
    from train_entry.methods.sft import build_trainer
    from train_entry.runtime import World

    cfg = RunConfig(name="bench", base_model=str(model_dir), peft=PeftConfig(type="none"),
                    data=DataConfig(train=str(data)),
                    training=TrainingConfig(epochs=1, per_device_batch_size=batch, max_length=max_length,
                                            learning_rate=1e-4, logging_steps=10_000, save_steps=10**9,
                                            warmup_ratio=0.0, packing=True),
                    outputs=OutputsConfig(output_dir=str(out / "o"), checkpoint_dir=str(out / "c")))
    cfg.tracking.tensorboard = False
    ctx = TrainContext(cfg=cfg, layout=resolve(cfg, out / "run.json"), world=World(0, 0, 1), precision="fp32")
    trainer = build_trainer(ctx)
    real = sum(len(x) for x in trainer.train_dataset["input_ids"])
    computed = sum(b["input_ids"].numel() for b in trainer.get_train_dataloader())
    return timed_train(trainer), real, computed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=96)
    ap.add_argument("--max-length", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=8, help="per-device batch for (a) and (b)")
    ap.add_argument("--hidden-size", type=int, default=128)
    ap.add_argument("--vocab-size", type=int, default=8192,
                    help="tokenizer vocabulary (trained on the whole file); real LLM vocabularies are 32k-150k")
    args = ap.parse_args()

    from train_entry.runtime import quiet_libraries
    from train_entry.tiny import build_tiny_model

    quiet_libraries()
    corpus = load_texts(10**9)
    texts = corpus[: args.samples]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "chosen.jsonl"
        data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
        model = build_tiny_model(tmp / "model", texts=corpus, vocab_size=args.vocab_size,
                                 hidden_size=args.hidden_size, layers=2)
        results = {}
        for name, fn, src, batch in (("a_tutorial", run_tutorial, texts, args.batch),
                                     ("b_trl_default", run_trl_default, texts, args.batch),
                                     ("c_train_entry", run_train_entry, data, 1)):
            seconds, real, computed = fn(model, src, args.max_length, batch, tmp / name)
            results[name] = {"seconds": round(seconds, 2), "real_tokens": real, "computed_tokens": computed,
                             "tokens_per_s": real / seconds, "efficiency": real / computed}
            print(f"{name:14s} {real:>8d} real / {computed:>9d} computed tokens  {seconds:7.2f} s  "
                  f"{real / seconds:9.0f} real tok/s  efficiency {real / computed:.3f}", flush=True)
    a, b, c = (results[k]["tokens_per_s"] for k in ("a_tutorial", "b_trl_default", "c_train_entry"))
    summary = {"ratio_vs_tutorial": round(c / a, 2), "ratio_vs_trl_default": round(c / b, 2),
               "packing_efficiency": round(results["c_train_entry"]["efficiency"], 4),
               "samples": args.samples, "max_length": args.max_length, "vocab_size": args.vocab_size,
               "hidden_size": args.hidden_size, "device": "cpu"}
    print(f"c/a = {c / a:.2f}x   c/b = {c / b:.2f}x   packing efficiency = {summary['packing_efficiency']:.3f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
