"""Build a tiny model on the spot: a Llama-architecture config with random weights and a BPE tokenizer
trained on the given text files, saved with `save_pretrained` so it loads with the real
`from_pretrained` code. Used by `make demo`, the tests and the benchmarks (no hub downloads).

    python -m train_entry.tiny --data examples/data/quickstart.jsonl --out .cache/tiny-llama
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path
from typing import Iterable, Iterator, Optional

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]
# config.json key that marks a model built here, and what runs on it can and cannot show
TINY_MARKER = "cloudft_tiny_model"
TINY_NOTE = ("tiny model with random weights (train_entry.tiny): these figures show that the pipeline runs end to "
             "end, not that it learns; benchmarks/outcome.py measures SFT and DPO on real data")


def _strings(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def iter_texts(paths: Iterable[str | Path], limit: int = 20000) -> Iterator[str]:
    """Every string value in JSONL files (gzip ok), up to `limit` records per file."""
    for path in paths:
        path = Path(path)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            for i, line in enumerate(fh):
                if i >= limit:
                    break
                line = line.strip()
                if not line:
                    continue
                try:
                    yield from _strings(json.loads(line))
                except json.JSONDecodeError:
                    yield line


def build_tokenizer(texts: Iterable[str], vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on `texts`, wrapped as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", additional_special_tokens=SPECIAL[4:])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(out: str | Path, data: Optional[list[str | Path]] = None, texts: Optional[list[str]] = None,
                     vocab_size: int = 512, hidden_size: int = 64, layers: int = 2, heads: int = 4,
                     seed: int = 0) -> Path:
    """Create and save a tiny LlamaForCausalLM + tokenizer in `out`; returns the directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out)
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    corpus = list(texts or []) + list(iter_texts(data or []))
    if not corpus:
        raise ValueError("build_tiny_model needs some text (data files or texts) to train the tokenizer")
    tokenizer = build_tokenizer(corpus, vocab_size=vocab_size)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False, **{TINY_MARKER: True},
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out


def is_tiny_model(path: str | Path) -> bool:
    """Whether `path` holds a model built by build_tiny_model (its config.json carries TINY_MARKER)."""
    try:
        return bool(json.loads((Path(path) / "config.json").read_text()).get(TINY_MARKER))
    except (OSError, ValueError, AttributeError):
        return False


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", required=True, help="JSONL files whose text trains the tokenizer")
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab-size", type=int, default=512)
    ap.add_argument("--hidden-size", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    args = ap.parse_args(argv)
    path = build_tiny_model(args.out, data=args.data, vocab_size=args.vocab_size, hidden_size=args.hidden_size,
                            layers=args.layers)
    print(f"tiny model ready: {path}")


if __name__ == "__main__":
    main()
