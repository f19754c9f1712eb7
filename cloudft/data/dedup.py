"""Near-duplicate detection with MinHash + LSH (datasketch), on word 3-gram shingles of a record's text.

A record is compared part by part (`formats.record_parts`): two preference pairs are near-duplicates only when
their prompts, chosen and rejected answers are each alike, so distinct pairs that share a long prompt are kept.
The LSH index (on the whole text) only proposes candidates; each is checked part by part against the threshold.
"""

from __future__ import annotations

import re
from typing import Any, Hashable, Optional, Sequence

NUM_PERM = 64
SHINGLE = 3
MAX_LSH_THRESHOLD = 0.9  # datasketch cannot band 64 permutations above ~0.96; candidates come from here
_WORD = re.compile(r"\w+")


def shingles(text: str, size: int = SHINGLE) -> set[bytes]:
    """Lower-cased word n-grams (the words themselves for texts shorter than n words)."""
    words = _WORD.findall(text.lower())
    if len(words) <= size:
        return {" ".join(words).encode("utf-8")} if words else set()
    return {" ".join(words[i:i + size]).encode("utf-8") for i in range(len(words) - size + 1)}


def _hash32(data: bytes) -> int:
    import xxhash

    return xxhash.xxh32_intdigest(data)


class NearDupIndex:
    """An LSH index of MinHash signatures: `check(key, parts)` returns an earlier near-duplicate's key."""

    def __init__(self, threshold: float, num_perm: int = NUM_PERM):
        from datasketch import MinHash, MinHashLSH

        if not 0 < threshold <= 1:
            raise ValueError(f"near-duplicate threshold {threshold} must be in (0, 1]")
        try:
            import xxhash  # noqa: F401  (fast shingle hash; sha1 otherwise)

            hashfunc: Any = _hash32
        except ImportError:  # pragma: no cover
            hashfunc = None
        self.threshold = threshold
        self._MinHash = MinHash
        proto = MinHash(num_perm=num_perm, hashfunc=hashfunc)
        self._kwargs = dict(num_perm=num_perm, hashfunc=hashfunc, permutations=proto.permutations,
                            scheme=getattr(proto, "scheme", None))
        # candidates at a slightly lower similarity than asked: the whole text of records alike in every part is
        # about as alike (but not exactly), and each candidate is checked against `threshold` anyway
        self.lsh = MinHashLSH(threshold=min(threshold * 0.9, MAX_LSH_THRESHOLD), num_perm=num_perm)
        self._sigs: dict[Hashable, list[Any]] = {}

    def signature(self, text: str) -> Optional[Any]:
        sh = shingles(text)
        if not sh:
            return None
        m = self._MinHash(**self._kwargs)
        m.update_batch(sh)
        return m

    def _alike(self, a: Optional[Any], b: Optional[Any]) -> bool:
        if a is None or b is None:
            return a is None and b is None  # two empty parts are alike; an empty and a full one are not
        return a.jaccard(b) >= self.threshold

    def _best(self, whole: Any, parts: list[Optional[Any]]) -> Optional[Hashable]:
        for key in self.lsh.query(whole):
            sigs = self._sigs[key]
            if len(sigs) == len(parts) and all(self._alike(x, y) for x, y in zip(sigs, parts)):
                return key
        return None

    def _signatures(self, parts: Sequence[str] | str) -> tuple[Optional[Any], list[Optional[Any]]]:
        """The signature of the whole text (None when it has no shingle) and of each part."""
        parts = [parts] if isinstance(parts, str) else list(parts)
        whole = self.signature("\n".join(parts))
        if whole is None:
            return None, []
        return whole, ([self.signature(p) for p in parts] if len(parts) > 1 else [whole])

    def query(self, parts: Sequence[str] | str) -> Optional[Hashable]:
        """The key of an indexed record alike in every part, else None."""
        whole, sigs = self._signatures(parts)
        return self._best(whole, sigs) if whole is not None else None

    def check(self, key: Hashable, parts: Sequence[str] | str) -> Optional[Hashable]:
        """The earlier near-duplicate's key; otherwise index this record and return None."""
        whole, sigs = self._signatures(parts)
        if whole is None:
            return None
        found = self._best(whole, sigs)
        if found is None:
            from datasketch import LeanMinHash

            self.lsh.insert(key, LeanMinHash(whole), check_duplication=False)
            self._sigs[key] = [LeanMinHash(s) if s is not None else None for s in sigs]
        return found
