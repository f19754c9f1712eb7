"""Pulumi program for cloudft on Azure. Settings: `Pulumi.<stack>.yaml` (namespace `cloudft:`), see docs/infra.md."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `infra.components`

import pulumi  # noqa: E402

from infra.components.azure_stack import AzureStackSettings, build_azure_stack  # noqa: E402

settings = AzureStackSettings.from_config(pulumi.Config("cloudft"), pulumi.get_stack(),
                                          location=pulumi.Config("azure-native").get("location"))
for key, value in build_azure_stack(settings).items():
    pulumi.export(key, value)
