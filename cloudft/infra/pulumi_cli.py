"""Finding the Pulumi CLI, which the Automation API drives under the hood."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

from ..errors import CloudftError

INSTALL_HINT = ("install the Pulumi CLI: `curl -fsSL https://get.pulumi.com | sh` (Linux/macOS), "
                "`brew install pulumi/tap/pulumi`, or `winget install pulumi`; then open a new shell so `pulumi` is "
                "on PATH (or set PULUMI_HOME to its install folder). See https://www.pulumi.com/docs/install/")


class PulumiCliMissing(CloudftError):
    """The Pulumi CLI is not installed (or not on PATH)."""

    exit_code = 3

    def __init__(self, needed_for: str = "this command"):
        super().__init__(f"the Pulumi CLI is not installed: {needed_for} runs Pulumi through its Automation API, "
                         "which needs the `pulumi` command", hint=INSTALL_HINT)


def find_pulumi_root() -> Optional[str]:
    """The folder holding `bin/pulumi` (None: use `pulumi` from PATH). Raises PulumiCliMissing when there is none."""
    if shutil.which("pulumi"):
        return None
    candidates = [os.environ.get("PULUMI_HOME"), str(Path.home() / ".pulumi")]
    for root in filter(None, candidates):
        if os.access(Path(root) / "bin" / "pulumi", os.X_OK):
            return root
    raise PulumiCliMissing()
