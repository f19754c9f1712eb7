"""Pulumi program for cloudft on AWS. Settings: `Pulumi.<stack>.yaml` (namespace `cloudft:`), see docs/infra.md."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `infra.components`

import pulumi  # noqa: E402

from infra.components.aws_stack import AwsStackSettings, build_aws_stack  # noqa: E402

settings = AwsStackSettings.from_config(pulumi.Config("cloudft"), pulumi.get_stack())
for key, value in build_aws_stack(settings).items():
    pulumi.export(key, value)
