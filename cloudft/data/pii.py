"""Optional PII warnings: e-mail addresses, phone numbers, and strings that look like cloud credentials."""

from __future__ import annotations

import re

PATTERNS: dict[str, re.Pattern[str]] = {
    "email address": re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"),
    "phone number": re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]\d{3}[ .-]\d{4}\b"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(r"(?i)aws.{0,20}?secret.{0,20}?[=:]\s*['\"]?[A-Za-z0-9/+]{40}\b"),
    "Azure storage key": re.compile(r"AccountKey=[A-Za-z0-9+/=]{40,}"),
    "private key": re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
    "API token": re.compile(r"\b(?:sk-[A-Za-z0-9]{20,}|hf_[A-Za-z0-9]{30,}|gh[pousr]_[A-Za-z0-9]{36})\b"),
}


def find_pii(text: str) -> list[str]:
    """The kinds of personal data / credentials found in `text` (empty when none)."""
    return [kind for kind, rx in PATTERNS.items() if rx.search(text)]
