"""The local OpenAI-compatible server: transformers + PEFT behind FastAPI, started by `cloudft deploy --provider
local` where vLLM and a GPU are not available (this CPU machine).

    python -m cloudft.serving.server CONFIG.json

Routes: GET /health, GET /v1/models, POST /v1/completions, POST /v1/chat/completions (no streaming). A bad request
gets a 400 in OpenAI's error shape ({"error": {"message", "type", "param", "code"}}) that names what is wrong;
a request over the spec's limits (`serve.max_new_tokens`, `serve.max_prompt_tokens`, the model's context) is
refused the same way, never truncated. One generation runs at a time (the CPU is the bottleneck).

Why a small app and not a serving package: see docs/serving.md ("What was evaluated").
"""

import json
import logging
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..spec import ServeConfig
from .protocol import ChatCompletionRequest, CompletionRequest, explain

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .textgen import TextModel

log = logging.getLogger("cloudft.serving")

#: OpenAI's default max_tokens for /v1/completions
COMPLETION_DEFAULT_TOKENS = 16


class ServerConfig(BaseModel):
    """What the server process serves (written by deploy next to the endpoint record)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="The served model's name (clients send it as `model`).")
    base_name: Optional[str] = Field(None, description="Name of the bare base model, served when an adapter is.")
    weights: str = Field(..., description="Base model (adapter mode) or full/merged weights: hub id or folder.")
    adapter: Optional[str] = None
    host: str = "127.0.0.1"
    port: int = Field(..., ge=1, le=65535)
    limits: ServeConfig = Field(default_factory=ServeConfig)
    max_body_bytes: int = Field(1 << 20, ge=1024)


class ApiError(Exception):
    """A request the server refuses: the HTTP status and OpenAI's error fields."""

    def __init__(self, status: int, message: str, param: Optional[str] = None,
                 kind: str = "invalid_request_error", code: Optional[str] = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.kind, self.code = status, message, param, kind, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_body(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or an ApiError saying why it is not one."""
    try:
        data = json.loads(raw, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "the body is nested too deeply") from None
    if not isinstance(data, dict):
        kind = {list: "an array", str: "a string", type(None): "null", bool: "a boolean"}.get(type(data), "a number")
        raise ApiError(400, f"the body must be a JSON object, not {kind}")
    return data


class Server:
    """The request handling, independent of the HTTP framework (create_app wires it into FastAPI)."""

    def __init__(self, cfg: ServerConfig, tm: "TextModel") -> None:
        self.cfg, self.tm, self.started = cfg, tm, int(time.time())

    # -- requests ------------------------------------------------------------------------------------------
    def validate(self, raw: bytes, model: type) -> Any:
        data = parse_body(raw)
        try:
            req = model.model_validate(data)
        except ValidationError as exc:
            message, param = explain(exc)
            raise ApiError(400, message, param) from None
        bad = req.unsupported()
        if bad:
            raise ApiError(400, f"{bad}={json.dumps(getattr(req, bad))} is not supported by this server "
                                "(leave it out)", bad)
        return req

    def use_adapter(self, requested: Optional[str]) -> bool:
        """Whether `model` names the served model (True) or the bare base (False); 404 for anything else."""
        if requested in (None, self.cfg.name):
            return True
        if self.cfg.base_name and requested == self.cfg.base_name:
            return False
        names = ", ".join(n for n in (self.cfg.name, self.cfg.base_name) if n)
        raise ApiError(404, f"the model `{requested}` does not exist; this server serves: {names}", "model",
                       kind="NotFoundError", code="model_not_found")

    def check_lengths(self, prompt_tokens: int, max_tokens: int, param: str) -> None:
        lim, ctx = self.cfg.limits, self.tm.context
        if prompt_tokens == 0:
            raise ApiError(400, "the prompt is empty", "prompt")
        if max_tokens > lim.max_new_tokens:
            raise ApiError(400, f"{param} {max_tokens} is above this server's limit of {lim.max_new_tokens} tokens "
                                "per answer (serve.max_new_tokens in the spec)", param)
        if prompt_tokens > lim.prompt_cap:
            raise ApiError(400, f"the prompt has {prompt_tokens} tokens, above this server's limit of "
                                f"{lim.prompt_cap} (serve.max_prompt_tokens in the spec)", "prompt")
        if ctx and prompt_tokens + max_tokens > ctx:
            raise ApiError(400, f"this model's maximum context length is {ctx} tokens; the prompt has "
                                f"{prompt_tokens} and {param} asks for {max_tokens}", param)

    def _generate(self, ids: list[int], max_tokens: int, req: Any, adapter: bool):
        try:
            return self.tm.generate(ids, max_tokens, temperature=req.temperature, top_p=req.top_p, stop=req.stops,
                                    seed=req.seed, adapter=adapter)
        except Exception as exc:  # noqa: BLE001 - the client gets a 500 with the type; the log gets the traceback
            log.exception("generation failed")
            raise ApiError(500, f"generation failed ({type(exc).__name__}); see the server log",
                           kind="server_error") from None

    def completion(self, raw: bytes) -> dict[str, Any]:
        req = self.validate(raw, CompletionRequest)
        adapter = self.use_adapter(req.model)
        ids = self.tm.encode(req.text)
        max_tokens = req.max_tokens or min(COMPLETION_DEFAULT_TOKENS, self.cfg.limits.max_new_tokens)
        self.check_lengths(len(ids), max_tokens, "max_tokens")
        gen = self._generate(ids, max_tokens, req, adapter)
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": req.model or self.cfg.name,
                "choices": [{"index": 0, "text": gen.text, "logprobs": None, "finish_reason": gen.finish_reason}],
                "usage": _usage(len(ids), gen.tokens)}

    def chat(self, raw: bytes) -> dict[str, Any]:
        req = self.validate(raw, ChatCompletionRequest)
        adapter = self.use_adapter(req.model)
        try:
            text = self.tm.chat_text([m.as_template() for m in req.messages])
        except ValueError as exc:
            raise ApiError(400, str(exc), "messages") from None
        except Exception as exc:  # noqa: BLE001 - the chat template itself refused the messages (jinja raise)
            raise ApiError(400, f"the model's chat template refused these messages: {exc}", "messages") from None
        ids = self.tm.encode(text)
        param = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
        room = (self.tm.context - len(ids)) if self.tm.context else self.cfg.limits.max_new_tokens
        max_tokens = req.answer_limit or max(1, min(self.cfg.limits.max_new_tokens, room))
        self.check_lengths(len(ids), max_tokens, param)
        gen = self._generate(ids, max_tokens, req, adapter)
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": req.model or self.cfg.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.text},
                             "logprobs": None, "finish_reason": gen.finish_reason}],
                "usage": _usage(len(ids), gen.tokens)}

    def models(self) -> dict[str, Any]:
        def card(name: str, root: str, parent: Optional[str]) -> dict[str, Any]:
            return {"id": name, "object": "model", "created": self.started, "owned_by": "cloudft", "root": root,
                    "parent": parent}

        cards = [card(self.cfg.name, self.cfg.adapter or self.cfg.weights,
                      self.cfg.base_name if self.cfg.adapter else None)]
        if self.cfg.base_name and self.cfg.adapter:
            cards.append(card(self.cfg.base_name, self.cfg.weights, None))
        return {"object": "list", "data": cards}


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _read_body(request: Any, limit: int) -> bytes:
    """The body, refusing (413) more than `limit` bytes whether or not Content-Length is sent."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise ApiError(413, f"the body is larger than this server's limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"the body is larger than this server's limit of {limit} bytes")
    return bytes(body)


def create_app(server: Server) -> "FastAPI":
    """The FastAPI app around `server`; generation runs in the thread pool, one at a time."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="cloudft local server", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": server.cfg.name}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return server.models()

    @app.post("/v1/completions")
    async def completions(request: Request) -> dict[str, Any]:
        raw = await _read_body(request, server.cfg.max_body_bytes)
        return await run_in_threadpool(server.completion, raw)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        raw = await _read_body(request, server.cfg.max_body_bytes)
        return await run_in_threadpool(server.chat, raw)

    return app


def main(argv: Optional[list[str]] = None) -> int:
    """Load the model named in the config file, then serve until SIGTERM."""
    import uvicorn

    from .textgen import load_text_model

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m cloudft.serving.server CONFIG.json", file=sys.stderr)
        return 2
    cfg = ServerConfig.model_validate_json(Path(args[0]).read_text())
    from train_entry.runtime import quiet_libraries

    quiet_libraries()  # no progress bars or deprecation noise in the server log
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("loading %s%s", cfg.weights, f" + adapter {cfg.adapter}" if cfg.adapter else "")
    started = time.time()
    tm = load_text_model(cfg.weights, cfg.adapter)
    log.info("loaded in %.1f s; serving %s on http://%s:%d/v1", time.time() - started, cfg.name, cfg.host, cfg.port)
    uvicorn.run(create_app(Server(cfg, tm)), host=cfg.host, port=cfg.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
