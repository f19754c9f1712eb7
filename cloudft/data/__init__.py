"""Datasets: formats, validation, prepare (dedup, split, leakage, PII), stats and content-addressed versions.

Light on import (no torch/transformers/datasets): `resolve.resolve_stage_data` is the plan's data resolver,
`check.check_data` the pre-submit check, `version.dataset_version` / `version.write_dataset` the stable API.
See docs/data.md.
"""
