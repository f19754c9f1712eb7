"""The Key Vault reference rules, shared with the job's launcher.

`templates/azure/cloudft_keyvault.py` runs inside the job and the endpoint (no cloudft there) and holds the one
definition of a valid vault reference and secret name; `cloudft validate` loads that same file so the spec is
refused with the same rule before anything is sent. Stdlib only: no Azure SDK is imported.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from types import ModuleType

from ...paths import templates_dir

LAUNCHER_MODULE = "cloudft_keyvault"


@lru_cache(maxsize=1)
def rules() -> ModuleType:
    """templates/azure/cloudft_keyvault.py as a module (vault_name, vault_url, secret_name, parse)."""
    path = templates_dir() / "azure" / f"{LAUNCHER_MODULE}.py"
    spec = importlib.util.spec_from_file_location(f"cloudft._templates.{LAUNCHER_MODULE}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def vault_name(value: str) -> str:
    """The vault name of a reference (`NAME` or `https://NAME.vault.azure.net`); ValueError otherwise."""
    return rules().vault_name(value)


def secret_name(value: str) -> str:
    """A checked Key Vault secret name; ValueError otherwise."""
    return rules().secret_name(value)
