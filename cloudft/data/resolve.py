"""The plan's data resolver (`cloudft.plan.DATA_RESOLVER`): validate, normalise and version a stage's data.

Local files become canonical JSONL in the content-addressed store (`$CLOUDFT_HOME/datasets/<version>/`).
The fast path skips all work when the sources are unchanged: first by path+size+mtime, then by content hash.
`s3://` and `azureml://` URIs pass through unchanged (the provider resolves them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from train_entry.config import is_remote

from ..errors import CloudftError
from .pipeline import Options
from .tokens import TokenCounter

if TYPE_CHECKING:
    from train_entry.config import DataConfig

    from ..spec import JobSpec

DEFAULT_NEAR_DUP = None  # near-duplicate removal is off unless the spec sets data.near_dup_threshold


@dataclass(frozen=True)
class ResolvedData:
    """One stage's data as the plan uses it: where the canonical files are, what they hold, what was left out.

    Cloud URIs pass through unresolved (`local` is False); for local files every count comes from the
    validation that wrote the content-addressed version (`dataset_dir`)."""

    train: Optional[str]
    validation: Optional[str]
    format: str
    versions: dict[str, str] = field(default_factory=dict)
    dataset_version: Optional[str] = None
    dataset_dir: Optional[str] = None
    records: dict[str, int] = field(default_factory=dict)
    records_in: Optional[int] = None
    quarantined: int = 0
    problems: int = 0
    errors: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    quarantine: Optional[str] = None
    tokenizer: Optional[str] = None
    warnings: tuple[str, ...] = ()
    cached: bool = False
    note: Optional[str] = None

    @property
    def local(self) -> bool:
        """Validated and versioned here (not a cloud URI read where it runs)."""
        return self.dataset_dir is not None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["warnings"] = list(self.warnings)
        return {k: v for k, v in out.items() if v is not None}


def _local(spec: "JobSpec", value: str, field: str) -> Path:
    p = Path(value).expanduser()
    p = p if p.is_absolute() else spec.base_dir / p
    if not p.is_file():
        where = f"{spec.source_path}: " if spec.source_path else ""
        raise CloudftError(f"{where}data.{field}: file not found: {p}",
                           hint=f"point data.{field} at an existing file (a relative path is resolved from the "
                                f"spec's folder, {spec.base_dir})")
    return p


def stage_options(spec: "JobSpec", index: int, data: "DataConfig", method: Optional[str] = None) -> Options:
    """Pipeline options for a stage: method, max_length, the spec's tokenizer, split and dedup settings."""
    stage = spec.stage_list()[index]
    method = method or str(stage.method)
    max_length = int(stage.training_overrides().get("max_length", spec.training.max_length))
    counter, note = TokenCounter.for_model(spec.base_model, spec.base_dir)
    holdout = {"validation": data.validation_split} if data.validation_split > 0 and not data.validation else {}
    return Options(format=str(data.format), columns=data.columns, ignore=tuple(getattr(data, "ignore_columns", ())),
                   method=method, max_length=max_length, counter=counter, tokenizer_note=note,
                   near_dup=getattr(data, "near_dup_threshold", DEFAULT_NEAR_DUP) or None,
                   pii=bool(getattr(data, "pii_check", False)), holdout=holdout)


def resolve_stage_data(spec: "JobSpec", index: int, data: "DataConfig") -> ResolvedData:
    """Validate + normalise the stage's local data into the store; returns where it is and what it holds."""
    if is_remote(data.train):  # so is the validation split (DataConfig refuses a local one beside it)
        return ResolvedData(train=data.train, validation=data.validation, format=str(data.format),
                            note="cloud URI: passed to the provider unchanged (validated where it is read)")
    from . import store

    sources = [(_local(spec, data.train, "train"), "train")]
    if data.validation and not is_remote(data.validation):
        sources.append((_local(spec, data.validation, "validation"), "validation"))
    options = stage_options(spec, index, data)
    fingerprint = store.options_fingerprint(options)
    by_stat = store.stat_key(sources, fingerprint)
    manifest = store.cached_manifest(by_stat)
    cached = manifest is not None
    if manifest is None:
        by_content = store.content_key(sources, fingerprint)
        manifest = store.cached_manifest(by_content)
        cached = manifest is not None
        if manifest is None:
            _, manifest, _ = store.prepare_into_store(sources, options)
        store.remember([by_stat, by_content], manifest["version"])
    return _result(manifest, data, cached)


def _result(manifest: dict[str, Any], data: "DataConfig", cached: bool) -> ResolvedData:
    from .store import store_root

    root = store_root() / manifest["version"]
    splits = manifest["splits"]
    val = manifest.get("validation") or {}
    validation: Optional[str] = str(root / splits["validation"]["file"]) if "validation" in splits else None
    if validation is None and data.validation and is_remote(data.validation):
        validation = data.validation
    return ResolvedData(
        train=str(root / splits["train"]["file"]) if "train" in splits else None,
        validation=validation,
        format=manifest["format"],
        versions={name: s["version"] for name, s in splits.items()},
        dataset_version=manifest["version"],
        dataset_dir=str(root),
        records={name: s["records"] for name, s in splits.items()},
        records_in=val.get("records_in"),
        quarantined=val.get("quarantined", 0),
        problems=val.get("problems_total", 0),
        errors=val.get("errors", 0),
        counts=dict(val.get("counts", {})),
        quarantine=val.get("quarantine"),
        tokenizer=val.get("tokenizer"),
        warnings=tuple(val.get("warnings", [])),
        cached=cached,
    )
