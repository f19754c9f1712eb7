"""Near-duplicate detection with MinHash + LSH (datasketch), on word 3-gram shingles of a record's text."""

from __future__ import annotations

import re
from typing import Any, Hashable, Optional

NUM_PERM = 64
SHINGLE = 3
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
    """An LSH index of MinHash signatures: `check(key, text)` returns an earlier near-duplicate's key."""

    def __init__(self, threshold: float, num_perm: int = NUM_PERM):
        from datasketch import MinHash, MinHashLSH

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
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._sigs: dict[Hashable, Any] = {}

    def signature(self, text: str) -> Optional[Any]:
        sh = shingles(text)
        if not sh:
            return None
        m = self._MinHash(**self._kwargs)
        m.update_batch(sh)
        return m

    def query(self, text: str) -> Optional[Hashable]:
        """The key of an indexed record whose estimated Jaccard similarity is ≥ threshold, else None."""
        m = self.signature(text)
        return self._best(m) if m is not None else None

    def _best(self, m: Any) -> Optional[Hashable]:
        for key in self.lsh.query(m):
            if self._sigs[key].jaccard(m) >= self.threshold:
                return key
        return None

    def check(self, key: Hashable, text: str) -> Optional[Hashable]:
        """The earlier near-duplicate's key; otherwise index this record and return None."""
        m = self.signature(text)
        if m is None:
            return None
        found = self._best(m)
        if found is None:
            from datasketch import LeanMinHash

            lean = LeanMinHash(m)
            self.lsh.insert(key, lean, check_duplication=False)
            self._sigs[key] = lean
        return found
