"""The OpenAI request bodies the local server accepts (/v1/completions, /v1/chat/completions), strictly typed.

Fields of the OpenAI API this server does not implement are refused with a 400 naming them (never ignored), and
so are unknown fields, as the OpenAI API does ("Unrecognized request argument supplied"). Light: pydantic only.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

#: fields OpenAI defines that this server implements only at these values (None, not given, is always fine)
NO_OP: dict[str, tuple] = {"n": (1,), "best_of": (1,), "echo": (False,), "logprobs": (False,), "top_logprobs": (0,),
                           "suffix": ("",), "presence_penalty": (0,), "frequency_penalty": (0,), "logit_bias": ({},),
                           "stream": (False,)}


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    model: Optional[str] = Field(None, max_length=256)
    max_tokens: Optional[int] = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: Optional[Union[str, list[str]]] = None
    seed: Optional[int] = Field(None, ge=0, lt=2**63)
    user: Optional[str] = Field(None, max_length=256)
    n: Optional[int] = None
    stream: Optional[bool] = None
    logprobs: Optional[Any] = None
    top_logprobs: Optional[int] = None
    presence_penalty: Optional[float] = None
    frequency_penalty: Optional[float] = None
    logit_bias: Optional[dict[str, Any]] = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: Optional[Union[str, list[str]]]) -> Optional[Union[str, list[str]]]:
        stops = [v] if isinstance(v, str) else v or []
        if len(stops) > 4 or any(not s or len(s) > 256 for s in stops):
            raise ValueError("stop takes up to 4 non-empty strings of at most 256 characters")
        return v

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def unsupported(self) -> Optional[str]:
        """The first field set to a value this server does not implement (streaming, n > 1, logprobs, ...)."""
        for name, fine in NO_OP.items():
            value = getattr(self, name, None)
            if value is not None and value not in fine:
                return name
        return None


class CompletionRequest(_Request):
    """POST /v1/completions (OpenAI's legacy completions): one prompt per request."""

    prompt: Union[str, list[str]]
    echo: Optional[bool] = None
    best_of: Optional[int] = None
    suffix: Optional[str] = None

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: Union[str, list[str]]) -> Union[str, list[str]]:
        if isinstance(v, list) and len(v) != 1:
            raise ValueError("this server takes one prompt per request (a string, or a list of one string)")
        return v

    @property
    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["system", "user", "assistant"]
    content: Union[str, list[TextPart]]
    name: Optional[str] = Field(None, max_length=64)

    def as_template(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": self.role, "content": text}


class ChatCompletionRequest(_Request):
    """POST /v1/chat/completions: the model's chat template renders the messages."""

    messages: list[ChatMessage] = Field(..., min_length=1, max_length=512)
    max_completion_tokens: Optional[int] = Field(None, ge=1)

    @property
    def answer_limit(self) -> Optional[int]:
        return self.max_completion_tokens or self.max_tokens


def _is_tag(part: object) -> bool:
    """A union member's tag pydantic puts in an error location (str, list[str], TextPart, function-after[...])."""
    text = str(part)
    return not isinstance(part, int) and (text in ("str", "int", "float", "bool", "dict", "list") or "[" in text
                                          or text[:1].isupper())


JSON_TYPES = {str: "a string", int: "a number", float: "a number", bool: "a boolean", list: "an array",
              dict: "an object", type(None): "null"}


def explain(exc: ValidationError) -> tuple[str, Optional[str]]:
    """A validation error as one message and the field it concerns (OpenAI's `param`)."""
    errors = exc.errors()
    err = errors[0]
    loc = ".".join(str(p) for p in err["loc"] if not _is_tag(p))
    if err["type"] == "extra_forbidden":
        return f"unrecognized request argument supplied: {loc}", loc
    if err["type"] == "missing":
        return f"missing required field: {loc}", loc
    tags = [str(e["loc"][-1]) for e in errors if e["loc"] and _is_tag(e["loc"][-1])
            and ".".join(str(p) for p in e["loc"] if not _is_tag(p)) == loc]
    if len(tags) > 1:  # every member of a union refused the value: say which types fit
        got = JSON_TYPES.get(type(err.get("input")), "another type")
        return f"{loc}: expected {' or '.join(dict.fromkeys(tags))}, got {got}", loc
    msg = err["msg"].removeprefix("Value error, ")
    return (f"{loc}: {msg}" if loc else msg), loc or None
