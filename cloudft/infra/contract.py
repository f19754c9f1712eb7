"""The stack-output contract: a Pulumi stack for a provider exports these keys, named like the job spec's provider
section (`aws:` / `azure:`), so `--stack NAME` fills that section and spec values win over stack outputs."""

from __future__ import annotations

AWS_OUTPUT_KEYS: tuple[str, ...] = ("region", "role_arn", "pipeline_role_arn", "bucket", "prefix", "kms_key_arn",
                                   "subnets", "security_group_ids", "repository_url", "image_uri", "workteam_arn",
                                   "endpoint_name", "iam_policies")
AZURE_OUTPUT_KEYS: tuple[str, ...] = ("subscription_id", "resource_group", "workspace", "location", "compute",
                                     "key_vault", "storage_account", "registry", "endpoint_name",
                                     "identity_client_id", "endpoint_identity_id", "endpoint_identity_client_id",
                                     "role_assignments", "compute_vm_size", "compute_tier", "network",
                                     "system_datastores_auth_mode")
OUTPUT_KEYS: dict[str, tuple[str, ...]] = {"aws": AWS_OUTPUT_KEYS, "azure": AZURE_OUTPUT_KEYS}
PROVIDERS: tuple[str, ...] = tuple(OUTPUT_KEYS)
