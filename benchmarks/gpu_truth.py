"""Measured, not assumed: train_entry's trainers on real-shape models, against the planner's estimates.

One command for one CUDA GPU with no internet. Llama-3.1-8B (128k vocabulary) and Qwen2.5-7B are built with
random weights directly on the GPU from the configs in benchmarks/configs/ (the real shapes; nothing is
downloaded), then train_entry's own SFT and DPO trainers run a few timed optimizer steps after a warm-up:

- SFT with LoRA (bf16), QLoRA (NF4) and DoRA at 2k / 8k / 16k tokens, packing on, gradient checkpointing off and on;
- DPO with LoRA at 2k (both sequences of each pair at 2,048 tokens);
- baselines on the same model and data: TRL `SFTTrainer` with its defaults, the plain `Trainer` pad-to-max
  recipe, and train_entry + Liger kernels when liger-kernel is importable.

For each case: real tokens/s, MFU and HFU (FLOPs per token as docs/planner.md counts them, over the GPU's dense
bf16 peak from cloudft/planner/gpus.json), peak memory allocated and reserved, and the planner's estimate for the
same setup (cloudft.planner.memory.estimate_memory, cloudft.planner.throughput.tokens_per_second) with the ratio.
A case that runs out of GPU memory is recorded as OOM; when the time budget is spent the remaining cases are
skipped and the output says so. Writes gpu_truth.json and gpu_truth.md into --out after every case.

    python benchmarks/gpu_truth.py --out benchmarks/results/        # a CUDA GPU; ~6 min on an H100/H200
    python benchmarks/gpu_truth.py --smoke --out /tmp/gpu-truth      # the same code on a CPU, tiny model
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import platform
import random
import re
import sys
import tempfile
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "configs"
TOKENS_PER_WORD = 1.3  # English chat text under a 128k-vocabulary BPE (benchmarks/data/hh_chosen_words.json)
GIB = float(1 << 30)

# -- what runs ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One measured configuration."""

    model: str  # a file name in benchmarks/configs/ without .json
    arm: str  # train_entry | trl_default | pad_to_max | liger
    method: str = "sft"  # sft | dpo
    peft: str = "lora"  # lora | qlora | dora
    max_length: int = 2048
    gc: bool = False  # gradient checkpointing
    batch: int = 1

    @property
    def name(self) -> str:
        arm = "" if self.arm == "train_entry" else f"{self.arm}/"
        return f"{self.model}/{arm}{self.method}-{self.peft}/{self.max_length}/{'gc' if self.gc else 'no-gc'}"


@dataclass
class Profile:
    """The run's shape: models, lengths, steps and budget (GPU run or CPU smoke)."""

    main_model: str
    second_model: str
    lengths: tuple[int, ...]
    warmup: int
    timed: int
    budget_s: float
    case_cap_s: float
    tokenizer_words: int
    baseline_batch: dict[str, int] = field(default_factory=lambda: {"trl_default": 8, "pad_to_max": 4})

    def cases(self) -> list[Case]:
        """Every case, most important first (a spent budget skips the tail)."""
        m, short = self.main_model, self.lengths[0]
        grid = [(length, gc) for length in self.lengths for gc in (False, True)]
        out = [Case(m, "train_entry", "sft", "lora", n, gc) for n, gc in grid]
        out += [Case(m, "trl_default", batch=self.baseline_batch["trl_default"], max_length=short, gc=True),
                Case(m, "pad_to_max", batch=self.baseline_batch["pad_to_max"], max_length=short)]
        out += [Case(m, "train_entry", "dpo", "lora", short, gc) for gc in (False, True)]
        out += [Case(m, "train_entry", "sft", "qlora", n, gc) for n, gc in grid]
        out += [Case(m, "train_entry", "sft", "dora", n, gc) for n, gc in grid]
        q = self.second_model  # a second architecture (vocabulary 152k, GQA 28/4, q/k/v biases): GC on only
        out += [Case(q, "train_entry", "sft", "lora", n, True) for n in self.lengths]
        out += [Case(q, "train_entry", "sft", "qlora", self.lengths[1], True)]
        # last: Liger patches the modeling module (restored after the case, but keep it out of the way)
        out += [Case(m, "liger", max_length=short)]
        return out


GPU_PROFILE = Profile("llama-3.1-8b", "qwen2.5-7b", (2048, 8192, 16384), warmup=2, timed=3, budget_s=330,
                      case_cap_s=20, tokenizer_words=32000)
SMOKE_PROFILE = Profile("tiny-llama", "tiny-llama", (128, 256), warmup=1, timed=2, budget_s=120, case_cap_s=10,
                        tokenizer_words=1000, baseline_batch={"trl_default": 4, "pad_to_max": 2})


def smoke_cases(profile: Profile) -> list[Case]:
    """The smoke run: every arm and method once, both gradient-checkpointing settings once."""
    keep, seen = [], set()
    for c in profile.cases():
        key = (c.arm, c.method, c.peft, c.gc if c.peft == "lora" and c.arm == "train_entry" else None)
        if key not in seen and c.max_length == profile.lengths[0]:
            seen.add(key)
            keep.append(c)
    return keep


# -- model folder, tokenizer, data ------------------------------------------------------------------

def word_tokenizer(words: int):
    """A word-level tokenizer over `w0 … w{words-1}`: a text of n words is exactly n tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from train_entry.tiny import CHAT_TEMPLATE, SPECIAL

    vocab = {tok: i for i, tok in enumerate(SPECIAL + [f"w{i}" for i in range(words)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", additional_special_tokens=SPECIAL[4:])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def model_dir(name: str, root: Path, words: int) -> Path:
    """A model folder holding the bundled config.json and a word-level tokenizer (no weights)."""
    out = root / name
    if (out / "config.json").is_file():
        return out
    tok = word_tokenizer(words)
    cfg = json.loads((CONFIGS / f"{name}.json").read_text())
    if len(tok) > cfg["vocab_size"]:
        raise ValueError(f"{name}: tokenizer of {len(tok)} tokens exceeds the model's vocabulary {cfg['vocab_size']}")
    cfg.update(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    tok.save_pretrained(out)
    return out


def chat_lengths() -> list[int]:
    """Sample lengths in tokens: the real HH-RLHF chosen dialogs' word counts x TOKENS_PER_WORD."""
    doc = json.loads((HERE / "data" / "hh_chosen_words.json").read_text())
    return [max(1, round(w * TOKENS_PER_WORD)) for w in doc["words"]]


def random_text(rng: random.Random, n: int, words: int) -> str:
    return " ".join(f"w{rng.randrange(words)}" for _ in range(n))


def sft_texts(rng: random.Random, tokens: int, max_length: int, words: int) -> list[str]:
    """Chat-length texts holding at least `tokens` tokens (each shorter than max_length)."""
    lengths, out, total = chat_lengths(), [], 0
    while total < tokens:
        n = min(rng.choice(lengths), max_length - 1)
        out.append(random_text(rng, n, words))
        total += n + 1  # + EOS
    return out


def dpo_pairs(rng: random.Random, pairs: int, max_length: int, words: int) -> list[dict[str, str]]:
    """Pairs whose prompt + answer overflow max_length, so both sequences are cut to exactly max_length."""
    half = max_length // 2 + 8
    # answers start with a space: prompt + answer splits into the same words as prompt and answer apart
    return [{"prompt": random_text(rng, half, words), "chosen": " " + random_text(rng, half, words),
             "rejected": " " + random_text(rng, half, words)} for _ in range(pairs)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- random weights through the real loading code ----------------------------------------------------

def reset_memory_stats(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


@contextmanager
def restored_module(name: Optional[str]):
    """Undo module-level patches made inside the block (Liger replaces RoPE, RMSNorm and MLP in the modeling
    module, which would change every later model of that architecture in this process)."""
    if name is None:
        yield
        return
    import importlib

    module = importlib.import_module(name)
    saved = dict(vars(module))
    try:
        yield
    finally:
        for key in [k for k in vars(module) if k not in saved]:
            delattr(module, key)
        for key, value in saved.items():
            if vars(module).get(key) is not value:
                setattr(module, key, value)


@contextmanager
def random_weights(device: str, liger: bool = False):
    """Make `AutoModelForCausalLM.from_pretrained(folder, **kwargs)` return random weights of the folder's
    config, built on `device`, instead of reading a checkpoint.

    Everything else is the real loading path: train_entry's `load_model` passes its dtype, attention and
    bitsandbytes config as usual, and transformers quantizes the random state dict like a checkpoint's. Peak
    memory statistics restart once the model is loaded (building the random weights is not part of training).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    own = "from_pretrained" in AutoModelForCausalLM.__dict__
    original = AutoModelForCausalLM.__dict__.get("from_pretrained")

    def build(cls, source, *args, **kwargs):
        config = AutoConfig.from_pretrained(source)
        with torch.device(device):
            fresh = AutoModelForCausalLM.from_config(config, dtype=kwargs.get("dtype") or torch.float32)
        concrete, state = type(fresh), fresh.state_dict()
        del fresh
        kwargs.setdefault("device_map", {"": 0 if device == "cuda" else device})
        model = concrete.from_pretrained(None, *args, config=config, state_dict=state, **kwargs)
        del state
        model.config._name_or_path = model.name_or_path = str(source)  # where PEFT looks for config.json
        if liger:
            from transformers.integrations.liger import apply_liger_kernel

            # layer kernels only: TRL's SFTTrainer keeps its own fused LM head (as with use_liger_kernel=True)
            apply_liger_kernel(model, {"fused_linear_cross_entropy": False})
        reset_memory_stats(device)
        return model

    AutoModelForCausalLM.from_pretrained = classmethod(build)
    try:
        yield
    finally:
        if own:
            AutoModelForCausalLM.from_pretrained = original
        else:
            del AutoModelForCausalLM.from_pretrained


# -- measurement -------------------------------------------------------------------------------------

class TokenCounter:
    """Wraps a trainer's collator: real (non-pad) and computed tokens of every batch, in order."""

    def __init__(self, collate: Callable):
        self.collate = collate
        self.real: list[int] = []
        self.computed: list[int] = []

    def __call__(self, features):
        batch = self.collate(features)
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        self.computed.append(int(ids.numel()))
        self.real.append(int(mask.sum()) if mask is not None else int(ids.numel()))
        return batch


def step_timer(warmup: int, cap_s: float, sync: Callable[[], None]):
    """A TrainerCallback timing optimizer steps after `warmup`; stops training once `cap_s` is spent."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            self.ends.append(time.perf_counter())
            if len(self.ends) > warmup and self.ends[-1] - self.ends[warmup - 1] > cap_s:
                control.should_training_stop = True
            return control

    return StepTimer()


def matmul_tflops(device: str) -> float:
    """Achieved TFLOP/s of a square matrix product: bf16 8192^3 on a GPU (a ceiling to read MFU against),
    fp32 1024^3 on a CPU (the smoke run's MFU denominator)."""
    import torch

    n, dtype = (8192, torch.bfloat16) if device == "cuda" else (1024, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    sync()
    seconds = (time.perf_counter() - start) / 10
    del a, b
    if device == "cuda":
        torch.cuda.empty_cache()
    return round(2 * n**3 / seconds / 1e12, 3)


def gpu_key(name: str) -> Optional[str]:
    """The gpus.json entry for a CUDA device name (cloudft.machine.catalog_gpu, which the local planner uses too); an
    A100 whose name does not say its memory is told apart by the memory it has."""
    from cloudft.machine import catalog_gpu

    key = catalog_gpu(name)
    if key is None and "A100" in name.upper():
        import torch

        return "A100-80GB" if torch.cuda.get_device_properties(0).total_memory > 50 * GIB else "A100-40GB"
    return key


# -- the arms ----------------------------------------------------------------------------------------

def run_config(case: Case, model: Path, data: Path, work: Path, steps: int, precision: str):
    """train_entry's run config for a case, like every provider writes one."""
    from train_entry.config import (DataConfig, EvalConfig, OutputsConfig, PeftConfig, RunConfig, TrackingConfig,
                                    TrainingConfig)

    return RunConfig(
        name="gpu-truth", base_model=str(model), method=case.method, peft=PeftConfig(type=case.peft),
        data=DataConfig(train=str(data)),
        training=TrainingConfig(max_steps=steps, per_device_batch_size=case.batch, max_length=case.max_length,
                                gradient_checkpointing=case.gc, learning_rate=1e-5, warmup_ratio=0.0,
                                lr_scheduler="constant", logging_steps=steps, save_steps=10**9, precision=precision),
        tracking=TrackingConfig(tensorboard=False), eval=EvalConfig(enabled=False),
        outputs=OutputsConfig(output_dir=str(work / "output"), checkpoint_dir=str(work / "checkpoints")))


def build_train_entry(case: Case, cfg, work: Path, precision: str):
    """train_entry's own trainer for the case (train_entry.methods.<method>.build_trainer)."""
    from train_entry.context import TrainContext
    from train_entry.layout import resolve
    from train_entry.methods import dpo, sft
    from train_entry.runtime import World

    ctx = TrainContext(cfg=cfg, layout=resolve(cfg, work / "run.json"), world=World(0, 0, 1), precision=precision)
    return {"sft": sft, "dpo": dpo}[case.method].build_trainer(ctx)


def build_trl_default(case: Case, model_path: Path, texts: list[str], work: Path, steps: int, precision: str):
    """TRL SFTTrainer as its docs show it: defaults (dynamic padding, no packing, GC on) with the same LoRA."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from train_entry.config import PeftConfig
    from train_entry.context import TrainContext
    from train_entry.modeling import peft_config

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.bfloat16 if precision == "bf16" else None)
    args = SFTConfig(output_dir=str(work), max_steps=steps, per_device_train_batch_size=case.batch,
                     max_length=case.max_length, bf16=precision == "bf16", report_to=[], save_strategy="no",
                     logging_steps=steps, disable_tqdm=True, dataloader_pin_memory=precision != "fp32")
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts}),
                         processing_class=tok, peft_config=peft_config(PeftConfig(type="lora")))
    return TrainContext.quiet(trainer)


def build_pad_to_max(case: Case, model_path: Path, texts: list[str], work: Path, steps: int, precision: str):
    """The tutorial recipe: tokenizer padding="max_length" + DataCollatorForLanguageModeling + Trainer + LoRA."""
    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                              TrainingArguments)

    from train_entry.config import PeftConfig
    from train_entry.context import TrainContext
    from train_entry.modeling import peft_config

    tok = AutoTokenizer.from_pretrained(model_path)
    ds = Dataset.from_dict({"text": texts}).map(
        lambda b: tok(b["text"], padding="max_length", truncation=True, max_length=case.max_length),
        batched=True, remove_columns=["text"])
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.bfloat16 if precision == "bf16" else None)
    model = get_peft_model(model, peft_config(PeftConfig(type="lora")))
    args = TrainingArguments(output_dir=str(work), max_steps=steps, per_device_train_batch_size=case.batch,
                             bf16=precision == "bf16", report_to=[], save_strategy="no", logging_steps=steps,
                             disable_tqdm=True, dataloader_pin_memory=precision != "fp32")
    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      data_collator=DataCollatorForLanguageModeling(tok, mlm=False))
    return TrainContext.quiet(trainer)


# -- the planner's view of a case ---------------------------------------------------------------------

def planner_setup(case: Case, cfg):
    """The planner's Setup: from the run config for train_entry arms (the same mapping `cloudft plan` uses)."""
    from cloudft.planner.estimate import setup_for_stage
    from cloudft.planner.memory import Setup

    if cfg is not None:
        return setup_for_stage(cfg)
    loss = "chunked" if case.arm == "trl_default" else "hf"
    return Setup(method="sft", peft="lora", lora_dropout=0.05, seq_len=case.max_length, micro_batch=case.batch,
                 gradient_checkpointing=case.gc, loss=loss)


def planner_view(model: Path, setup, gpu: Optional[str]) -> dict[str, Any]:
    """Memory, tokens/s and FLOPs per token for the setup, from cloudft.planner's public functions."""
    from cloudft.planner.arch import resolve_arch
    from cloudft.planner.memory import estimate_memory
    from cloudft.planner.throughput import flops_per_token, tokens_per_second

    arch = resolve_arch(str(model)).arch
    view = {"memory": estimate_memory(arch, setup),
            "model_flops_per_token": flops_per_token(arch, dataclasses.replace(setup, gradient_checkpointing=False)),
            "hardware_flops_per_token": flops_per_token(arch, setup)}
    if gpu:
        view["speed"] = tokens_per_second(arch, setup, gpu)
    return view


# -- one case, guarded --------------------------------------------------------------------------------

@dataclass
class Env:
    """What every case shares."""

    device: str
    precision: str
    gpu: Optional[str]
    peak_tflops: Optional[float]
    profile: Profile
    root: Path
    deadline: float
    context_gib: float = 0.0  # CUDA context and library workspaces: on the device, outside PyTorch's allocator

    def sync(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()


def measure(case: Case, env: Env, cap_s: float) -> dict[str, Any]:
    """Build the case's trainer, run warm-up + timed steps, and return the figures."""
    p = env.profile
    steps = p.warmup + p.timed
    rng = random.Random(zlib.crc32(case.name.encode()))
    work = Path(tempfile.mkdtemp(prefix="case-", dir=env.root))
    model = model_dir(case.model, env.root, p.tokenizer_words)
    cfg = None
    if case.method == "dpo":
        data = write_jsonl(work / "pairs.jsonl", dpo_pairs(rng, steps * case.batch + 2, case.max_length,
                                                           p.tokenizer_words))
    else:
        texts = sft_texts(rng, int((steps + 2) * case.batch * case.max_length * 1.1), case.max_length,
                          p.tokenizer_words)
        data = write_jsonl(work / "texts.jsonl", [{"text": t} for t in texts])
    model_type = json.loads((model / "config.json").read_text())["model_type"]
    patched = f"transformers.models.{model_type}.modeling_{model_type}" if case.arm == "liger" else None
    with restored_module(patched):
        with random_weights(env.device, liger=case.arm == "liger"):
            if case.arm in ("train_entry", "liger"):
                cfg = run_config(case, model, data, work, steps, env.precision)
                trainer = build_train_entry(case, cfg, work, env.precision)
            elif case.arm == "trl_default":
                trainer = build_trl_default(case, model, texts, work / "out", steps, env.precision)
            else:
                trainer = build_pad_to_max(case, model, texts, work / "out", steps, env.precision)
        counter = TokenCounter(trainer.data_collator)
        trainer.data_collator = counter
        timer = step_timer(p.warmup, cap_s, env.sync)
        trainer.add_callback(timer)
        trainer.train()
    done = len(timer.ends)
    logs = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    out: dict[str, Any] = {"steps": done, "timed_steps": max(0, done - p.warmup)}
    if done > p.warmup:
        seconds = timer.ends[-1] - timer.ends[p.warmup - 1]
        real = sum(counter.real[p.warmup:done])
        computed = sum(counter.computed[p.warmup:done])
        out.update(seconds=round(seconds, 3), real_tokens=real, computed_tokens=computed,
                   tokens_per_s=round(real / seconds, 1), padding_efficiency=round(real / computed, 3))
    if logs:
        out["loss"] = round(logs[-1], 4)
    if env.device == "cuda":
        import torch

        out["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
        out["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / GIB, 2)
        out["device_peak_gib"] = round(out["peak_reserved_gib"] + env.context_gib, 2)
    view = planner_view(model, planner_setup(case, cfg), env.gpu)
    out.update(compare(case, out, view, env))
    del trainer
    return out


def compare(case: Case, got: dict[str, Any], view: dict[str, Any], env: Env) -> dict[str, Any]:
    """MFU/HFU and the planner's estimates next to what was measured."""
    mem = view["memory"]
    out: dict[str, Any] = {"planner_peak_gib": mem["peak_gb_per_device"],
                           "planner_tokens_per_micro_batch": mem["tokens_per_micro_batch"],
                           "model_flops_per_token": float(f"{view['model_flops_per_token']:.4g}")}
    if case.arm == "trl_default":
        out["planner_note"] = "dynamic padding: the batch's tokens vary, so the planner's worst case is an upper bound"
    if "device_peak_gib" in got:
        out["planner_vs_measured"] = round(mem["peak_gb_per_device"] / got["device_peak_gib"], 3)
    speed = view.get("speed")
    if speed:
        out["planner_tokens_per_s"] = speed["tokens_per_s_per_gpu"]
        if got.get("tokens_per_s"):
            out["measured_vs_planner_speed"] = round(got["tokens_per_s"] / speed["tokens_per_s_per_gpu"], 3)
    if env.peak_tflops and got.get("tokens_per_s"):
        peak = env.peak_tflops * 1e12
        out["mfu"] = round(got["tokens_per_s"] * view["model_flops_per_token"] / peak, 4)
        out["hfu"] = round(got["tokens_per_s"] * view["hardware_flops_per_token"] / peak, 4)
    return out


def is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def guarded(case: Case, run: Callable[[], dict[str, Any]], device: str) -> dict[str, Any]:
    """Run one case; an out-of-memory or any other failure is a recorded result, never a crash."""
    started = time.perf_counter()
    try:
        result = {"status": "ok", **run()}
    except Exception as exc:  # noqa: BLE001 - one failed case must not end the run
        status = "OOM" if is_oom(exc) else "error"
        result = {"status": status, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        if device == "cuda":
            import torch

            result["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
        del exc
    result["wall_s"] = round(time.perf_counter() - started, 1)
    reset_memory_stats(device)
    return {"case": case.name, **dataclasses.asdict(case), **result}


# -- the run -----------------------------------------------------------------------------------------

def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate", "datasets", "liger-kernel",
                "flash-attn"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def liger_available(device: str) -> Optional[str]:
    """None when the Liger arm can run, else why not."""
    from transformers.utils import is_liger_kernel_available

    if device != "cuda":
        return "liger-kernel runs Triton kernels on CUDA only"
    if not is_liger_kernel_available():
        return "liger-kernel is not importable"
    return None


def run_all(cases: list[Case], env: Env, meta: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    doc = {"meta": meta, "cases": results}
    liger_reason = liger_available(env.device)
    for i, case in enumerate(cases):
        remaining = env.deadline - time.perf_counter()
        if case.arm == "liger" and liger_reason:
            results.append({"case": case.name, **dataclasses.asdict(case), "status": "skipped",
                            "reason": liger_reason})
        elif remaining < env.profile.case_cap_s:
            left = cases[i:]
            meta["budget_note"] = (f"time budget of {env.profile.budget_s:.0f} s spent: {len(left)} case(s) not run; "
                                   "rerun them with --only")
            results.extend({"case": c.name, **dataclasses.asdict(c), "status": "skipped",
                            "reason": "time budget spent"} for c in left)
            break
        else:
            cap = min(env.profile.case_cap_s, max(1.0, remaining - env.profile.case_cap_s))
            results.append(guarded(case, lambda: measure(case, env, cap), env.device))
        row = results[-1]
        print(f"[{i + 1}/{len(cases)}] {row['case']}: {row['status']} " + summary_line(row), flush=True)
        write_outputs(doc, out_dir)
    meta["total_s"] = round(time.perf_counter() - meta["_started"], 1)
    write_outputs(doc, out_dir)
    return doc


def summary_line(row: dict[str, Any]) -> str:
    if row["status"] != "ok":
        return row.get("reason") or row.get("error", "")
    parts = [f"{row.get('tokens_per_s', 0):,.0f} tok/s"]
    if "mfu" in row:
        parts.append(f"MFU {row['mfu']:.1%}")
    if "peak_reserved_gib" in row:
        parts.append(f"{row['device_peak_gib']:.1f} GiB on the device (planner {row['planner_peak_gib']:.1f})")
    return ", ".join(parts)


# -- output ------------------------------------------------------------------------------------------

def _fmt(v: Any, spec: str = "") -> str:
    if v is None:
        return "–"
    return format(v, spec) if spec else str(v)


def markdown(doc: dict[str, Any]) -> str:
    meta, rows = doc["meta"], doc["cases"]
    lines = [f"# gpu_truth: {meta['device_name']} ({meta['date']})", "",
             f"GPU key `{meta['gpu']}`, MFU peak {_fmt(meta['peak_tflops'])} TFLOP/s ({meta['peak_source']}), measured "
             f"matmul {_fmt(meta['matmul_tflops'])} TFLOP/s. Steps: {meta['warmup']} warm-up + up to "
             f"{meta['timed']} timed. Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v), ""]
    if meta.get("smoke"):
        lines += ["**Smoke run on a CPU with a tiny model: these figures test the code path, not a GPU.**", ""]
    if meta.get("budget_note"):
        lines += [f"**{meta['budget_note']}**", ""]
    lines += ["| case | status | tok/s | MFU | HFU | alloc GiB | reserved GiB | device GiB | planner GiB "
              "| planner/device | planner tok/s | measured/planner tok/s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| " + " | ".join([
            r["case"], r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('reason') or r.get('error', '')}",
            _fmt(r.get("tokens_per_s"), ",.0f"), _fmt(r.get("mfu"), ".1%"), _fmt(r.get("hfu"), ".1%"),
            _fmt(r.get("peak_allocated_gib")), _fmt(r.get("peak_reserved_gib")), _fmt(r.get("device_peak_gib")),
            _fmt(r.get("planner_peak_gib")), _fmt(r.get("planner_vs_measured")), _fmt(r.get("planner_tokens_per_s"), ",.0f"),
            _fmt(r.get("measured_vs_planner_speed"))]) + " |")
    ratios = baseline_ratios(rows)
    if ratios:
        lines += ["", "Same model, data and length; real (non-pad) tokens/s of train_entry over each baseline:", ""]
        lines += [f"- {k}: {v}x" for k, v in ratios.items()]
    csv_rows = validation_rows(doc)
    if csv_rows:
        lines += ["", "Rows for cloudft/planner/validation.csv (measured = device GiB: peak reserved + CUDA context):",
                  "",
                  "```", *csv_rows, "```"]
    lines += ["", "MFU = model FLOPs per token (docs/planner.md: k·N + k·L·S·q_dim, k=4 LoRA family, DPO +2N "
                  "reference forward, attention counted at S = max_length) × real tokens/s ÷ dense bf16 peak; HFU "
              "also counts the gradient-checkpointing recompute. Weights are random (built on the GPU), so loss "
              "values mean nothing; memory and speed do not depend on the values."]
    return "\n".join(lines) + "\n"


def baseline_ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """train_entry LoRA at the baselines' length over TRL defaults, pad-to-max and (inverted) Liger."""
    by = {(r["arm"], r["max_length"], r["gc"], r["method"], r["peft"], r["model"]): r for r in rows
          if r["status"] == "ok" and r.get("tokens_per_s")}
    out = {}
    for r in rows:
        if r["arm"] == "train_entry" or r["status"] != "ok" or not r.get("tokens_per_s"):
            continue
        mine = by.get(("train_entry", r["max_length"], r["gc"] if r["arm"] == "liger" else False, "sft", "lora",
                       r["model"]))
        if mine:
            key = f"train_entry / {r['arm']} ({r['max_length']} tokens)"
            out[key] = round(mine["tokens_per_s"] / r["tokens_per_s"], 2)
    return out


def validation_rows(doc: dict[str, Any]) -> list[str]:
    """Measured SFT rows in validation.csv's columns (the planner's validation table), GPU and date in the id."""
    meta = doc["meta"]
    hf_ids = {"llama-3.1-8b": "meta-llama/Llama-3.1-8B", "qwen2.5-7b": "Qwen/Qwen2.5-7B"}
    out = []
    for r in doc["cases"]:
        if r["status"] != "ok" or r["arm"] != "train_entry" or r["method"] != "sft" or "device_peak_gib" not in r:
            continue
        if r["model"] not in hf_ids or not meta.get("gpu"):
            continue
        measured = round(r["device_peak_gib"], 2)  # GiB, as the planner and validation.csv count
        quant = "4" if r["peft"] == "qlora" else ""
        out.append(",".join([f"gpu-truth-{meta['date']}/{r['model']}/{r['peft']}/{r['max_length']}/"
                             f"{'gc' if r['gc'] else 'nogc'}", hf_ids[r["model"]], r["peft"], quant, "16",
                             "q_proj;k_proj;v_proj;o_proj;gate_proj;up_proj;down_proj", "0.05", str(r["max_length"]),
                             "1", "true" if r["gc"] else "false", "chunked", "flash", "adamw_torch", meta["gpu"],
                             str(measured), "test", "gpu-truth"]))
    return out


def write_outputs(doc: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    public = {**doc, "meta": {k: v for k, v in doc["meta"].items() if not k.startswith("_")}}
    tmp = out_dir / "gpu_truth.json.tmp"
    tmp.write_text(json.dumps(public, indent=2))
    tmp.replace(out_dir / "gpu_truth.json")
    (out_dir / "gpu_truth.md").write_text(markdown(public))


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "results", help="folder for gpu_truth.json and gpu_truth.md")
    ap.add_argument("--smoke", action="store_true", help="tiny model on the CPU: checks the code path in seconds")
    ap.add_argument("--only", help="regular expression: run only the cases whose name matches")
    ap.add_argument("--budget-s", type=float, help="total time for the cases (default 330 on a GPU, 120 smoke)")
    ap.add_argument("--gpu", help="gpus.json key for the MFU peak when the device name is not recognised")
    ap.add_argument("--list", action="store_true", help="print the case names (for --only) and exit")
    args = ap.parse_args(argv)
    if args.list:
        profile = SMOKE_PROFILE if args.smoke else GPU_PROFILE
        print("\n".join(c.name for c in (smoke_cases(profile) if args.smoke else profile.cases())))
        return 0

    started = time.perf_counter()
    import torch

    from train_entry.runtime import quiet_libraries

    quiet_libraries()
    if not args.smoke and not torch.cuda.is_available():
        print("gpu_truth: no CUDA GPU here; run it on a GPU machine, or use --smoke for the CPU check", file=sys.stderr)
        return 2
    profile = SMOKE_PROFILE if args.smoke else GPU_PROFILE
    if args.budget_s is not None:
        profile = dataclasses.replace(profile, budget_s=args.budget_s)
    cases = smoke_cases(profile) if args.smoke else profile.cases()
    if args.only:
        cases = [c for c in cases if re.search(args.only, c.name)]
    device = "cpu" if args.smoke else "cuda"
    from cloudft.planner.catalog import gpu_specs

    name = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu"
    gpu = args.gpu or (gpu_key(name) if device == "cuda" else None)
    matmul = matmul_tflops(device)
    # MFU denominator: the datasheet's dense bf16 peak; on a CPU (smoke) the measured fp32 matmul rate
    peak = gpu_specs()[gpu]["bf16_tflops"] if gpu else (matmul if device == "cpu" else None)
    context = 0.0
    if device == "cuda":
        torch.cuda.init()
        free, total = torch.cuda.mem_get_info()
        context = round((total - free - torch.cuda.memory_reserved()) / GIB, 2)
    meta = {"date": time.strftime("%Y-%m-%d"), "device_name": name, "gpu": gpu, "peak_tflops": peak,
            "peak_source": "gpus.json dense bf16" if gpu else "measured fp32 matmul (CPU smoke)",
            "matmul_tflops": matmul, "cuda_context_gib": context, "smoke": args.smoke,
            "warmup": profile.warmup, "timed": profile.timed, "budget_s": profile.budget_s,
            "precision": "bf16" if device == "cuda" else "fp32", "versions": versions(), "_started": started}
    with tempfile.TemporaryDirectory(prefix="gpu-truth-") as tmp:
        env = Env(device=device, precision=meta["precision"], gpu=gpu, peak_tflops=peak, profile=profile,
                  root=Path(tmp), deadline=time.perf_counter() + profile.budget_s, context_gib=context)
        doc = run_all(cases, env, meta, args.out)
    print(f"\nwrote {args.out / 'gpu_truth.json'} and {args.out / 'gpu_truth.md'} in {doc['meta']['total_s']:.0f} s")
    if doc["meta"].get("budget_note"):
        print(doc["meta"]["budget_note"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
