"""A SageMaker real-time endpoint for one adapter: model, endpoint configuration and endpoint."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from cloudft.planner.catalog import has_local_storage


class AdapterEndpoint(pulumi.ComponentResource):
    """SageMaker `Model` (serving image + adapter artifact + environment), an auto-named `EndpointConfiguration`
    (so a change creates a new config before deleting the old one) with the KMS key on its volumes, and an
    `Endpoint` with generous timeouts. Outputs: `endpoint_name`, `model_name`.

    Instance families with local NVMe storage (g5, p4d, ...) reject a volume KMS key; their instance store is
    encrypted by AWS, so the key is left out for them.
    """

    def __init__(self, name: str, *, role_arn: pulumi.Input[str], image: pulumi.Input[str],
                 model_data_url: Optional[pulumi.Input[str]], instance_type: str, kms_key_arn: pulumi.Input[str],
                 instance_count: int = 1, environment: Optional[Mapping[str, str]] = None,
                 endpoint_name: Optional[str] = None, subnets: Sequence[str] = (),
                 security_group_ids: Sequence[str] = (), startup_timeout_s: int = 900,
                 tags: Optional[dict[str, str]] = None, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudft:aws:AdapterEndpoint", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        container: dict = {"image": image, "environment": dict(environment or {})}
        if model_data_url:
            container["model_data_url"] = model_data_url
        vpc = {"subnets": list(subnets), "security_group_ids": list(security_group_ids)} if subnets else None
        self.model = aws.sagemaker.Model(f"{name}-model", execution_role_arn=role_arn, primary_container=container,
                                         vpc_config=vpc, tags=tags, opts=child)
        self.config = aws.sagemaker.EndpointConfiguration(
            f"{name}-config",
            production_variants=[{"variant_name": "AllTraffic", "model_name": self.model.name,
                                  "instance_type": instance_type, "initial_instance_count": instance_count,
                                  "container_startup_health_check_timeout_in_seconds": startup_timeout_s,
                                  "model_data_download_timeout_in_seconds": startup_timeout_s}],
            kms_key_arn=None if has_local_storage(instance_type) else kms_key_arn, tags=tags, opts=child)
        self.endpoint = aws.sagemaker.Endpoint(
            f"{name}-endpoint", name=endpoint_name, endpoint_config_name=self.config.name, tags=tags,
            opts=pulumi.ResourceOptions(parent=self, custom_timeouts=pulumi.CustomTimeouts(
                create="60m", update="60m", delete="30m")))
        self.endpoint_name = self.endpoint.name
        self.model_name = self.model.name
        self.register_outputs({"endpoint_name": self.endpoint_name, "model_name": self.model_name})
