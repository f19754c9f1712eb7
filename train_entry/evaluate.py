"""After training and exports (main process): base vs tuned on the held-out split.

`evaluate(ctx, exports)` (called by cli._after_training when eval.enabled) measures, bounded by eval.max_samples:
- validation loss / perplexity of the base and the tuned model on the reference completions;
- preference methods: held-out preference accuracy and reward margins (DPO-style implicit rewards
  beta * (log p_tuned - log p_base) for dpo/orpo/kto; reward-model scores for `reward`);
- `rl`: the reward model's mean score of base vs tuned generations;
- greedy generations side by side for eval.prompts (or the first held-out prompts);
- ROUGE-L (rouge-score) and BLEU (sacrebleu) of generations against the references, when there are any (both
  packages are optional, train_entry/requirements-report.txt: a metric whose package is missing is skipped and the
  report's notes say so);
- the validation loss of what the export step wrote (merged weights, the 8-bit / NF4 copy) and the change
  quantization made;
and returns (numbers, generations, notes) for metrics.json and the report. "base" is the stage's starting
point: the base model, or an earlier full fine-tuning stage's weights (`init_model`).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

from .events import log
from .progress import EVALUATE, GENERATE, Phase
from .splits import held_out_records

POLICY_PREFERENCE = {"dpo", "orpo", "kto"}
TEXT_METRIC_SAMPLES = 16  # generations scored with ROUGE/BLEU (each costs max_new_tokens decoding steps)


# -- held-out data ---------------------------------------------------------------------------------

def _render(tokenizer, prompt, completion) -> tuple[str, str]:
    """(prompt text, completion text) for a standard or conversational (message list) sample."""
    if isinstance(prompt, str) and isinstance(completion, str):
        return prompt, completion
    from .data import restore_messages  # tool calls are stored with JSON-text arguments and null-filled keys

    prompt, completion = restore_messages(list(prompt)), restore_messages(list(completion))
    p = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
    return p, full[len(p):] if full.startswith(p) else full


def completions(records: list[dict], fmt: str, tokenizer, field: str = "chosen") -> list[tuple[str, str]]:
    """(prompt, reference completion) text pairs: completion, chosen (or `field`), desirable kto
    completions, the last assistant turn of chat messages, or ("", text)."""
    out = []
    for r in records:
        if fmt == "prompt_completion":
            out.append(_render(tokenizer, r["prompt"], r["completion"]))
        elif fmt == "preference":
            out.append(_render(tokenizer, r["prompt"], r[field]))
        elif fmt == "kto" and r["label"]:
            out.append(_render(tokenizer, r["prompt"], r["completion"]))
        elif fmt == "messages":
            msgs = r["messages"]
            last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
            if last:
                out.append(_render(tokenizer, msgs[:last], msgs[last:last + 1]))
        elif fmt == "text":
            out.append(("", r["text"]))
    return out


# -- scoring ---------------------------------------------------------------------------------------

def _device(model):
    return next(model.parameters()).device


def sequence_logps(model, tokenizer, pairs: list[tuple[str, str]], max_length: int,
                   batch_size: int = 8, label: str = "scoring") -> list[tuple[float, int]]:
    """(sum of log p, token count) of each completion given its prompt (keep-start truncation)."""
    import torch

    rows = []
    for prompt, completion in pairs:
        p_ids = tokenizer(prompt)["input_ids"] if prompt else []
        ids = tokenizer(prompt + completion)["input_ids"][:max_length]
        start = 0
        while start < min(len(p_ids), len(ids)) and p_ids[start] == ids[start]:
            start += 1
        rows.append((ids, max(start, 1)))
    pad = tokenizer.pad_token_id
    out: list[tuple[float, int]] = []
    with torch.no_grad(), Phase(EVALUATE, total=len(rows), unit="samples", label=label, announce=False) as phase:
        for i in range(0, len(rows), batch_size):
            chunk = rows[i:i + batch_size]
            width = max(len(ids) for ids, _ in chunk)
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            target = torch.zeros((len(chunk), width), dtype=torch.bool)
            for j, (ids, start) in enumerate(chunk):
                input_ids[j, :len(ids)] = torch.tensor(ids)
                mask[j, :len(ids)] = 1
                target[j, start:len(ids)] = True
            dev = _device(model)
            logits = model(input_ids=input_ids.to(dev), attention_mask=mask.to(dev)).logits.float()
            logits = logits[:, -width:]  # prompt tuning / p-tuning prepend virtual-token positions
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            tok_logp = logp.gather(-1, input_ids[:, 1:].to(dev).unsqueeze(-1)).squeeze(-1)
            tmask = target[:, 1:].to(dev)
            sums = (tok_logp * tmask).sum(-1)
            for s, n in zip(sums.tolist(), tmask.sum(-1).tolist()):
                out.append((s, int(n)))
            phase.advance(len(chunk))
    return out


def mean_nll(logps: list[tuple[float, int]]) -> Optional[float]:
    tokens = sum(n for _, n in logps)
    return -sum(s for s, _ in logps) / tokens if tokens else None


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 8,
             label: str = "generation") -> list[str]:
    """Greedy completions (left padding), decoded without the prompt."""
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    texts: list[str] = []
    stepwise = _prompt_learning(model)
    try:
        with torch.no_grad(), Phase(GENERATE, total=len(prompts), unit="prompts", label=label,
                                    announce=False) as phase:
            if stepwise:  # prompt-learning adapters: one prompt at a time (see _greedy_by_forward)
                for prompt in prompts:
                    ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(_device(model))
                    new = _greedy_by_forward(model, ids, max_new_tokens, tokenizer.eos_token_id)
                    texts.append(tokenizer.decode(new, skip_special_tokens=True))
                    phase.advance(1)
            else:
                for i in range(0, len(prompts), batch_size):
                    enc = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True).to(_device(model))
                    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                         pad_token_id=tokenizer.pad_token_id)
                    texts.extend(tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:],
                                                        skip_special_tokens=True))
                    phase.advance(enc["input_ids"].shape[0])
    finally:
        tokenizer.padding_side = side
    return texts


def _prompt_learning(model) -> bool:
    config = getattr(model, "active_peft_config", None)
    return bool(getattr(config, "is_prompt_learning", False))


def _greedy_by_forward(model, ids, max_new_tokens: int, eos_id) -> list[int]:
    """Greedy decoding with one full forward pass per token, for prompt-learning adapters: with transformers 5 and
    PEFT 0.21, `PeftModel.generate` drops a prefix adapter's key/values and misplaces prompt-tuning tokens after the
    first step (cloudft's server decodes these adapters the same way; tests/test_serve_local.py shows the bug)."""
    import torch

    new: list[int] = []
    for _ in range(max_new_tokens):
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1]
        token = int(logits.argmax())
        new.append(token)
        if token == eos_id:
            break
        ids = torch.cat([ids, ids.new_tensor([[token]])], dim=1)
    return new


#: text metric → (its label in notes, the module it needs, the package that provides it)
TEXT_METRICS = {"rougeL": ("ROUGE-L", "rouge_score.rouge_scorer", "rouge-score"),
                "bleu": ("BLEU", "sacrebleu", "sacrebleu")}


def missing_text_metrics() -> dict[str, str]:
    """Text metrics that cannot be computed here → why (their package is missing or broken)."""
    import importlib

    out = {}
    for metric, (label, module, package) in TEXT_METRICS.items():
        try:
            importlib.import_module(module)
        except ImportError as exc:
            out[metric] = (f"{label} not computed: {package} cannot be imported ({type(exc).__name__}: {exc}); "
                           "install it (train_entry/requirements-report.txt) or train on the train_entry image "
                           "(train_entry/Dockerfile)")
    return out


def text_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """ROUGE-L F1 (rouge-score, mean over samples) and corpus BLEU (sacrebleu, 0-100), each when its package is
    installed (`missing_text_metrics` says which is not)."""
    missing = missing_text_metrics()
    out = {}
    if "rougeL" not in missing:
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        rouge = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)]
        out["rougeL"] = sum(rouge) / max(1, len(rouge))
    if "bleu" not in missing:
        import sacrebleu

        out["bleu"] = sacrebleu.corpus_bleu(predictions, [references]).score
    return out


# -- models ----------------------------------------------------------------------------------------

class Models:
    """The tuned model and the stage's starting point ("base": the base model, or an earlier stage's full
    weights): one set of weights when the stage saved an adapter (the base is the same model with the adapter
    disabled), two otherwise."""

    def __init__(self, ctx):
        from .modeling import is_adapter_dir, load_model

        self.ctx = ctx
        out = ctx.layout.output_dir
        base = self._place(load_model(ctx.cfg, ctx.precision, ctx.model_source))
        self._base = None
        if is_adapter_dir(out):
            from peft import PeftModel

            self.tuned = PeftModel.from_pretrained(base, str(out)).eval()
        else:
            self.tuned = self._place(load_model(ctx.cfg, ctx.precision, str(out), what="trained model")).eval()
            self._base = base.eval()

    @staticmethod
    def _place(model):
        import torch

        if torch.cuda.is_available() and not getattr(model, "hf_device_map", None):
            model = model.to("cuda")
        return model

    @contextmanager
    def base(self):
        if self._base is not None:
            yield self._base
        else:
            with self.tuned.disable_adapter():
                yield self.tuned


# -- the evaluation --------------------------------------------------------------------------------

def evaluate(ctx, exports: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, str]], list[str]]:
    """(numbers, generations, notes): base vs tuned on held-out data, and the exported copies' validation loss.
    A failed evaluation is a note, not a failed job: the trained model and the exports are already saved."""
    cfg = ctx.cfg
    results: dict[str, Any] = {}
    generations: list[dict[str, str]] = []
    notes: list[str] = []
    with Phase(EVALUATE, unit="records", label="evaluation", max_samples=cfg.eval.max_samples) as phase:
        try:
            records, fmt = held_out_records(cfg, ctx.layout)
            phase.total = len(records)
            if not records:
                notes.append("no held-out data (set data.validation or data.validation_split): "
                             "no validation metrics")
            if cfg.method == "reward":
                results.update(_reward_model_metrics(ctx, records, fmt))
            else:
                generations = _policy_metrics(ctx, records, fmt, results, notes)
                results.update(_export_metrics(ctx, records, fmt, exports, results))
            phase.advance(len(records))
        except Exception as exc:  # noqa: BLE001 - the model is saved; a failed evaluation must not fail the job
            log(f"warning: evaluation failed: {type(exc).__name__}: {exc}")
            notes.append(f"evaluation failed: {type(exc).__name__}: {exc}")
    return results, generations, notes


def _policy_metrics(ctx, records, fmt, results: dict[str, Any], notes: list[str]) -> list[dict[str, str]]:
    cfg = ctx.cfg
    models = Models(ctx)
    tok = _tokenizer(ctx)
    max_len = cfg.training.max_length
    pairs = completions(records, fmt, tok) if records else []
    if pairs:
        tuned_lp = sequence_logps(models.tuned, tok, pairs, max_len, label="validation loss, tuned")
        with models.base() as base:
            base_lp = sequence_logps(base, tok, pairs, max_len, label="validation loss, base")
        for name, lp in (("base", base_lp), ("tuned", tuned_lp)):
            nll = mean_nll(lp)
            if nll is not None:
                results[f"val_loss_{name}"] = nll
                results[f"val_ppl_{name}"] = math.exp(min(nll, 50.0))
    if records and fmt == "preference" and cfg.method in POLICY_PREFERENCE:
        results.update(_implicit_rewards(models, tok, records, fmt, cfg.training.beta, max_len))
    prompts = list(cfg.eval.prompts) or [p for p, _ in pairs[:3]]
    generations = []
    if prompts:
        tuned_gen = generate(models.tuned, tok, prompts, cfg.eval.max_new_tokens, label="report generations, tuned")
        with models.base() as base:
            base_gen = generate(base, tok, prompts, cfg.eval.max_new_tokens, label="report generations, base")
        generations = [{"prompt": p, "base": b, "tuned": t} for p, b, t in zip(prompts, base_gen, tuned_gen)]
    scored = [(p, ref) for p, ref in pairs[:TEXT_METRIC_SAMPLES] if p and ref.strip()]
    skipped = missing_text_metrics() if scored else {}
    for why in skipped.values():
        log(f"warning: {why}")
        notes.append(why)
    rl_scored = cfg.method == "rl" and ctx.layout.reward_model is not None
    if scored and (len(skipped) < len(TEXT_METRICS) or rl_scored):  # generations cost decoding: only if used
        sp = [p for p, _ in scored]
        refs = [r for _, r in scored]
        tuned_out = generate(models.tuned, tok, sp, cfg.eval.max_new_tokens, label="text metrics, tuned")
        with models.base() as base:
            base_out = generate(base, tok, sp, cfg.eval.max_new_tokens, label="text metrics, base")
        for name, preds in (("base", base_out), ("tuned", tuned_out)):
            for k, v in text_metrics(preds, refs).items():
                results[f"{k}_{name}"] = v
        if rl_scored:
            results.update(_rl_rewards(ctx, sp, base_out, tuned_out))
    return generations


def _implicit_rewards(models, tok, records, fmt, beta: float, max_len: int) -> dict[str, float]:
    """Held-out preference accuracy and margins of the DPO implicit reward beta * log(p_tuned / p_base)."""
    chosen, rejected = completions(records, fmt, tok, "chosen"), completions(records, fmt, tok, "rejected")
    lp = {"tuned": (sequence_logps(models.tuned, tok, chosen, max_len, label="implicit rewards, tuned chosen"),
                    sequence_logps(models.tuned, tok, rejected, max_len, label="implicit rewards, tuned rejected"))}
    with models.base() as base:
        lp["base"] = (sequence_logps(base, tok, chosen, max_len, label="implicit rewards, base chosen"),
                      sequence_logps(base, tok, rejected, max_len, label="implicit rewards, base rejected"))
    (tc, tr), (bc, br) = lp["tuned"], lp["base"]
    margins = [beta * ((c[0] - bc_[0]) - (r[0] - br_[0])) for c, r, bc_, br_ in zip(tc, tr, bc, br)]
    n = len(margins)
    return {
        "pref_accuracy": sum(m > 0 for m in margins) / n,
        "reward_margin": sum(margins) / n,
        "logp_pref_accuracy_base": sum(c[0] > r[0] for c, r in zip(bc, br)) / n,
        "logp_pref_accuracy_tuned": sum(c[0] > r[0] for c, r in zip(tc, tr)) / n,
    }


def _reward_model_metrics(ctx, records, fmt) -> dict[str, float]:
    """Held-out accuracy (score(chosen) > score(rejected)) and mean margin of the trained reward model."""
    from .scoring import load_reward_model, score

    if not records or fmt != "preference":
        return {}
    model, tok = load_reward_model(ctx.layout.output_dir, base=ctx.model_source)
    model = Models._place(model)
    chosen = [p + c for p, c in completions(records, fmt, tok, "chosen")]  # rendered like RewardTrainer does
    rejected = [p + r for p, r in completions(records, fmt, tok, "rejected")]
    sc = score(model, tok, chosen, ctx.cfg.training.max_length)
    sr = score(model, tok, rejected, ctx.cfg.training.max_length)
    margins = [c - r for c, r in zip(sc, sr)]
    return {"pref_accuracy": sum(m > 0 for m in margins) / len(margins),
            "reward_margin": sum(margins) / len(margins)}


def _rl_rewards(ctx, prompts, base_out, tuned_out) -> dict[str, float]:
    """Mean reward-model score of base vs tuned generations on held-out prompts."""
    from .scoring import load_reward_model, score

    model, tok = load_reward_model(ctx.layout.reward_model, base=ctx.cfg.base_model)
    model = Models._place(model)
    res = {}
    for name, outs in (("base", base_out), ("tuned", tuned_out)):
        s = score(model, tok, [p + o for p, o in zip(prompts, outs)], ctx.cfg.training.max_length)
        res[f"rl_reward_{name}"] = sum(s) / len(s)
    return res


def _tokenizer(ctx):
    from .modeling import load_tokenizer

    out = ctx.layout.output_dir
    return load_tokenizer(str(out) if (out / "tokenizer_config.json").is_file() else ctx.tokenizer_source)


# -- exports ---------------------------------------------------------------------------------------

def _export_metrics(ctx, records, fmt, exports: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """Validation loss of the merged weights and of the quantized copy the export step wrote."""
    if not records or not ({"merged_dir", "quantized_dir"} & set(exports)):
        return {}
    tok = _tokenizer(ctx)
    pairs = completions(records, fmt, tok)
    if not pairs:
        return {}
    res: dict[str, Any] = {}
    max_len = ctx.cfg.training.max_length
    if "merged_dir" in exports:
        res["merged_val_loss"] = _val_loss_of(Path(exports["merged_dir"]), tok, pairs, max_len)
    if "quantized_dir" in exports:
        qloss = _val_loss_of(Path(exports["quantized_dir"]), tok, pairs, max_len)
        res["quantized_val_loss"] = qloss
        if "val_loss_tuned" in results and qloss is not None:
            res["quantized_val_loss_change"] = qloss - results["val_loss_tuned"]
    return res


def _val_loss_of(model_dir: Path, tok, pairs, max_length: int) -> Optional[float]:
    from transformers import AutoModelForCausalLM

    from .modeling import from_pretrained

    model = Models._place(from_pretrained(AutoModelForCausalLM, str(model_dir), "exported model")).eval()
    return mean_nll(sequence_logps(model, tok, pairs, max_length, label=f"validation loss, {model_dir.name}"))
