"""Azure ML online-endpoint scoring script for cloudft runs: base model + PEFT adapter (any PEFT type).

Why base + adapter (not merged): the registered model is the run's adapter output folder as is (megabytes,
no extra export step); the base is pulled once per instance at start-up (Hugging Face id from
CLOUDFT_BASE_MODEL or the adapter's config). If the folder also holds merged weights (`export.merge: true`
writes `merged/`), those are served directly instead; a run without PEFT serves its full weights.

Request:  {"prompt": "...", "max_new_tokens": 128, "adapter": true}   (also accepted under "input_data")
Response: {"generated_text": "...", "prompt_tokens": N, "completion_tokens": M, "finish_reason": "stop"|"length"}
          as a JSON object (the inference server serialises what run() returns, so returning a JSON string
          would encode it twice).
Errors:   HTTP 400 {"error": "..."} for a body that is not a JSON object, an unknown field, a wrong type, an empty
          prompt, or a request over the limits: CLOUDFT_MAX_NEW_TOKENS answer tokens and CLOUDFT_MAX_PROMPT_TOKENS
          prompt tokens (the spec's `serve:` section), and the model's context.
Generation is greedy and goes through cloudft_textgen (cloudft/serving/textgen.py, staged beside this file by
`cloudft deploy`), the same code as cloudft's local server. `"adapter": false` asks the bare base model (deploy's
smoke test compares both).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

tm = None  # cloudft_textgen.TextModel, loaded once per worker by init()

#: request fields and their JSON types
FIELDS = {"prompt": str, "max_new_tokens": int, "adapter": bool}
DEFAULT_NEW_TOKENS = 128
EXAMPLE = '{"prompt": "...", "max_new_tokens": 128}'
JSON_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array",
              dict: "an object", type(None): "null"}


def _limit(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() and int(value) > 0 else default


MAX_NEW_TOKENS = _limit("CLOUDFT_MAX_NEW_TOKENS", 512)
MAX_PROMPT_TOKENS = _limit("CLOUDFT_MAX_PROMPT_TOKENS", 4096)


def _find(root: Path, marker: str) -> Path | None:
    hits = sorted(root.rglob(marker), key=lambda p: len(p.parts))
    return hits[0].parent if hits else None


def init() -> None:
    """Load once per worker: secrets from Key Vault (HF_TOKEN for gated bases), then what the run serves."""
    global tm
    from cloudft_textgen import load_text_model

    if os.environ.get("CLOUDFT_SECRETS"):
        from cloudft_keyvault import load_secrets

        load_secrets(os.environ)
    root = Path(os.environ.get("AZUREML_MODEL_DIR", "."))
    merged = next((p.parent for p in root.rglob("config.json") if p.parent.name == "merged"), None)
    adapter = _find(root, "adapter_config.json")
    if merged is not None or adapter is None:  # merged weights, or a run without PEFT: full weights
        tm = load_text_model(str(merged or _find(root, "config.json") or root))
        return
    base = os.environ.get("CLOUDFT_BASE_MODEL") or json.loads((adapter / "adapter_config.json").read_text())[
        "base_model_name_or_path"]
    tm = load_text_model(base, str(adapter))


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _kind(value) -> str:
    return JSON_NAMES.get(type(value), type(value).__name__)


def parse_request(raw_data) -> dict:
    """The request as {prompt, max_new_tokens, adapter}; ValueError with the reason for anything else."""
    try:
        body = json.loads(raw_data, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("the body is nested too deeply") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the body is not valid JSON ({exc}); send {EXAMPLE}") from None
    if isinstance(body, dict) and set(body) == {"input_data"}:
        body = body["input_data"]
    if not isinstance(body, dict):
        raise ValueError(f"the body must be a JSON object like {EXAMPLE}, not {_kind(body)}")
    unknown = sorted(str(k) for k in set(body) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)}; this endpoint takes {', '.join(FIELDS)}")
    if "prompt" not in body:
        raise ValueError(f"the body needs a prompt: {EXAMPLE}")
    for name, kind in FIELDS.items():
        if name in body and type(body[name]) is not kind:  # `type is`: true/false are not integers here
            raise ValueError(f"{name} must be {JSON_NAMES[kind]}, not {_kind(body[name])}")
    max_new = body.get("max_new_tokens", min(DEFAULT_NEW_TOKENS, MAX_NEW_TOKENS))
    if max_new < 1:
        raise ValueError("max_new_tokens must be at least 1")
    if max_new > MAX_NEW_TOKENS:
        raise ValueError(f"max_new_tokens {max_new} is above this endpoint's limit of {MAX_NEW_TOKENS} "
                         "(serve.max_new_tokens in the spec)")
    if not body["prompt"]:
        raise ValueError("the prompt is empty")
    return {"prompt": body["prompt"], "max_new_tokens": max_new, "adapter": body.get("adapter", True)}


def error_response(message: str, status: int = 400):
    """An HTTP error with a JSON body, as the Azure ML inference server passes a Response through."""
    body = {"error": message}
    try:
        from azureml_inference_server_http.api.aml_response import AMLResponse
    except ImportError:  # the server is Flask-based: a plain flask Response is passed through the same way
        from flask import Response

        return Response(json.dumps(body), status=status, mimetype="application/json")
    return AMLResponse(body, status, json_str=True)


def run(raw_data):
    """One request → the continuation of its prompt (greedy), or a 400 naming what is wrong with it."""
    try:
        req = parse_request(raw_data)
    except ValueError as exc:
        return error_response(str(exc))
    ids = tm.encode(req["prompt"])
    max_new = req["max_new_tokens"]
    if not ids:
        return error_response("the prompt encodes to no tokens")
    if len(ids) > MAX_PROMPT_TOKENS:
        return error_response(f"the prompt has {len(ids)} tokens, above this endpoint's limit of "
                              f"{MAX_PROMPT_TOKENS} (serve.max_prompt_tokens in the spec)")
    if tm.context and len(ids) + max_new > tm.context:
        return error_response(f"this model's context is {tm.context} tokens; the prompt has {len(ids)} and "
                              f"max_new_tokens asks for {max_new}")
    if not req["adapter"] and not tm.has_adapter:
        return error_response("this endpoint serves merged or full weights: there is no adapter to switch off")
    gen = tm.generate(ids, max_new, adapter=req["adapter"])
    return {"generated_text": gen.text, "prompt_tokens": len(ids), "completion_tokens": gen.tokens,
            "finish_reason": gen.finish_reason}
