"""Provider backends: one module per cloud behind `Provider` (see base.py).

Modules are imported only when their provider is used, so `cloudft --help` stays light.
"""

from __future__ import annotations

import importlib

from ..errors import CloudftError
from .base import Provider

_PROVIDERS = {
    "local": "cloudft.providers.local:LocalProvider",
    "aws": "cloudft.providers.aws:AwsProvider",
    "azure": "cloudft.providers.azure:AzureProvider",
}

NAMES = tuple(_PROVIDERS)


def get_provider(name: str) -> Provider:
    """Instantiate the provider called `name` (local, aws, azure)."""
    try:
        target = _PROVIDERS[name]
    except KeyError:
        raise CloudftError(f"unknown provider '{name}'", hint=f"use one of: {', '.join(_PROVIDERS)}") from None
    module, cls = target.split(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise CloudftError(f"the '{name}' provider is not available in this version of cloudft") from None
        raise
    return getattr(mod, cls)()
