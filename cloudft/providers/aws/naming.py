"""Deterministic names: the same spec + data gives the same job name, so an accidental resubmit is a no-op."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...plan import Plan

MAX_NAME = 63  # SageMaker job / pipeline / endpoint names


def run_key(plan: "Plan") -> str:
    """Key of a whole plan (every stage's work key: spec content, dataset versions, and a fresh key with --rerun)."""
    return plan.key[:10]


def clean(text: str) -> str:
    """Letters, digits and single dashes (the SageMaker name alphabet)."""
    return re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9-]", "-", text)).strip("-")


def job_name(spec_name: str, key: str, counter: int) -> str:
    """`cft-NAME-KEY-N`, at most 63 characters, the NAME part shortened when needed."""
    tail = f"-{key}-{counter}"
    head = clean(f"cft-{spec_name}")[: MAX_NAME - len(tail)].rstrip("-")
    return head + tail


def pipeline_name(spec_name: str, key: str) -> str:
    tail = f"-{key}"
    return clean(f"cft-{spec_name}")[: MAX_NAME - len(tail)].rstrip("-") + tail


def request_token(name: str) -> str:
    """ClientRequestToken (32-128 chars) derived from a name: retries of the same start are deduplicated."""
    return hashlib.sha256(name.encode()).hexdigest()[:40]
