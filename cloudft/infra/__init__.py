"""Pulumi stacks for cloudft: the Automation API wrapper (`workspace`), Pulumi CLI detection (`pulumi_cli`), the
stack-output contract (`contract`) and `outputs.stack_outputs(provider, stack)` for `--stack NAME`.

Nothing here imports pulumi at module level: `cloudft --help` and offline JSON outputs stay light.
"""

from __future__ import annotations

from .contract import OUTPUT_KEYS
from .outputs import stack_outputs

__all__ = ["OUTPUT_KEYS", "stack_outputs"]
