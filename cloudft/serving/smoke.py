"""The smoke test every `cloudft deploy` runs: one greedy request to what was just deployed, checked.

Where the adapter and its base are on this machine (local deployments), the answer is compared with the same
greedy request through the adapter here, with PEFT ("reference"). Where they are not (cloud endpoints), the
endpoint is asked the same question with the adapter switched off, and the answer must differ from the bare
base's ("adapter-vs-base"); an endpoint that serves merged weights has no bare base to ask ("answered").
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional

if TYPE_CHECKING:
    from ..providers.base import Provider

#: answer length of the smoke request
SMOKE_TOKENS = 16
DEFAULT_PROMPT = "Hello! What can you do?"

Check = Literal["reference", "adapter-vs-base", "answered"]


@dataclass(frozen=True)
class SmokeReport:
    """What the smoke test asked, what came back, what it was compared with, and the verdict."""

    prompt: str
    answer: str
    check: Check
    ok: bool
    expected: Optional[str] = None  # the local reference, or the bare base's answer
    latency_s: float = 0.0
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        verdict = "passed" if self.ok else "FAILED"
        return f"smoke test {verdict} ({self.check}, {self.latency_s:.2f} s): {self.detail}"


def timed(ask: Callable[[], str]) -> tuple[str, float]:
    started = time.perf_counter()
    answer = ask()
    return answer, time.perf_counter() - started


def compare_with_reference(prompt: str, ask: Callable[[], str], reference: str) -> SmokeReport:
    """The endpoint's greedy answer against the same request through the adapter on this machine."""
    answer, latency = timed(ask)
    if answer == reference:
        detail = "the endpoint's greedy answer equals the adapter's answer computed here"
        return SmokeReport(prompt, answer, "reference", True, reference, latency, detail)
    common = next((i for i, (a, b) in enumerate(zip(answer, reference)) if a != b), min(len(answer), len(reference)))
    detail = (f"the endpoint's greedy answer differs from the adapter's answer computed here from character "
              f"{common} on: got {answer!r}, expected {reference!r}")
    return SmokeReport(prompt, answer, "reference", False, reference, latency, detail)


def compare_with_base(provider: "Provider", endpoint: str, prompt: str, has_base: bool) -> SmokeReport:
    """The endpoint's greedy answer, and (when it serves an adapter on a base) the bare base's: they must differ."""
    answer, latency = timed(lambda: provider.invoke(endpoint, prompt, max_new_tokens=SMOKE_TOKENS))
    if not has_base:
        return SmokeReport(prompt, answer, "answered", True, None, latency,
                           "the endpoint answered; it serves merged/full weights, so there is no bare base to "
                           "compare with")
    base = provider.invoke(endpoint, prompt, max_new_tokens=SMOKE_TOKENS, base=True)
    if answer != base:
        return SmokeReport(prompt, answer, "adapter-vs-base", True, base, latency,
                           "the adapter answered: its greedy answer differs from the bare base's")
    return SmokeReport(prompt, answer, "adapter-vs-base", False, base, latency,
                       f"the greedy answer {answer!r} equals the bare base's: the endpoint may be serving the base "
                       "without the adapter")


def smoke_prompt(run) -> str:
    """The run's first eval prompt (its spec's eval.prompts), else a generic one."""
    if run.spec_path:
        try:
            from ..spec import load_spec

            prompts = load_spec(run.spec_path).eval.prompts
            if prompts:
                return prompts[0]
        except Exception:  # noqa: BLE001 - a spec moved or edited since: the generic prompt is fine
            pass
    return DEFAULT_PROMPT
