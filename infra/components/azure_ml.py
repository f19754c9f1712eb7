"""Azure ML building blocks (pulumi-azure-native v3; the `properties=` argument shape of the pinned SDK)."""

from __future__ import annotations

from typing import Mapping, Optional

import pulumi
from pulumi_azure_native import (applicationinsights, authorization, containerregistry, keyvault,
                                 machinelearningservices as ml, operationalinsights, storage)

# Built-in Azure role definition ids (the same in every tenant).
ROLE_ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
ROLE_STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
ROLE_KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"


def alnum(text: str, max_len: int) -> str:
    """Lowercase letters and digits only (storage account and registry names)."""
    return "".join(c for c in text.lower() if c.isalnum())[:max_len]


class MlWorkspace(pulumi.ComponentResource):
    """Storage account (no public blob access, TLS 1.2, HTTPS only, infrastructure encryption, blob versioning and
    soft delete), Key Vault (RBAC, purge protection), container registry (no admin user), Log Analytics +
    Application Insights, and an Azure ML workspace with a system-assigned identity linked to all of them.

    Outputs: `workspace_name`, `storage_account_name`, `key_vault_name`, `registry_name`, `registry_login_server`.
    """

    def __init__(self, name: str, *, resource_group_name: pulumi.Input[str], location: pulumi.Input[str],
                 tenant_id: pulumi.Input[str], registry_sku: str = "Basic",
                 managed_network: str = "AllowInternetOutbound", public_network_access: str = "Enabled",
                 tags: Optional[dict[str, str]] = None, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudft:azure:MlWorkspace", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        common = {"resource_group_name": resource_group_name, "location": location, "tags": tags}
        self.storage = storage.StorageAccount(
            alnum(f"{name}sa", 18), kind="StorageV2", sku={"name": "Standard_LRS"},
            allow_blob_public_access=False, minimum_tls_version="TLS1_2", enable_https_traffic_only=True,
            allow_cross_tenant_replication=False,
            encryption={"key_source": "Microsoft.Storage", "require_infrastructure_encryption": True,
                        "services": {"blob": {"enabled": True, "key_type": "Account"},
                                     "file": {"enabled": True, "key_type": "Account"}}},
            **common, opts=child)
        self.blob_service = storage.BlobServiceProperties(
            f"{name}-blob", account_name=self.storage.name, resource_group_name=resource_group_name,
            blob_services_name="default", is_versioning_enabled=True,
            delete_retention_policy={"enabled": True, "days": 14},
            container_delete_retention_policy={"enabled": True, "days": 14}, opts=child)
        self.logs = operationalinsights.Workspace(f"{name}-logs", sku={"name": "PerGB2018"}, retention_in_days=30,
                                                  **common, opts=child)
        self.insights = applicationinsights.Component(f"{name}-insights", kind="web", application_type="web",
                                                      ingestion_mode="LogAnalytics",
                                                      workspace_resource_id=self.logs.id, **common, opts=child)
        self.vault = keyvault.Vault(f"{name}-kv", properties={
            "tenant_id": tenant_id, "sku": {"family": "A", "name": "standard"},
            "enable_rbac_authorization": True, "enable_purge_protection": True, "enable_soft_delete": True,
            "soft_delete_retention_in_days": 90, "public_network_access": public_network_access},
            **common, opts=child)
        self.registry = containerregistry.Registry(alnum(f"{name}acr", 40), sku={"name": registry_sku},
                                                   admin_user_enabled=False, anonymous_pull_enabled=False,
                                                   **common, opts=child)
        self.workspace = ml.Workspace(
            f"{name}-ws", identity={"type": "SystemAssigned"}, sku={"name": "Basic", "tier": "Basic"},
            storage_account=self.storage.id, key_vault=self.vault.id, application_insights=self.insights.id,
            container_registry=self.registry.id, v1_legacy_mode=False, public_network_access=public_network_access,
            managed_network={"isolation_mode": managed_network}, friendly_name=f"cloudft {name}",
            # The storage account and key vault of a workspace cannot change after creation.
            **common, opts=pulumi.ResourceOptions(parent=self, depends_on=[self.blob_service]))
        self.managed_network = managed_network
        self.workspace_name = self.workspace.name
        self.storage_account_name = self.storage.name
        self.key_vault_name = self.vault.name
        self.registry_name = self.registry.name
        self.registry_login_server = self.registry.login_server
        self.register_outputs({"workspace_name": self.workspace_name, "storage_account_name": self.storage_account_name,
                               "key_vault_name": self.key_vault_name, "registry_name": self.registry_name})


class GpuCluster(pulumi.ComponentResource):
    """An AmlCompute GPU cluster that scales to zero after `idle_seconds`, dedicated or low-priority nodes, no node
    public IPs (needs the workspace's managed network or a subnet), SSH port closed, and a system-assigned identity
    granted AcrPull, Storage Blob Data Contributor and Key Vault Secrets User on the workspace's resources.

    Output: `compute_name`.
    """

    def __init__(self, name: str, *, workspace: MlWorkspace, resource_group_name: pulumi.Input[str],
                 location: pulumi.Input[str], subscription_id: pulumi.Input[str], vm_size: str,
                 max_nodes: int = 2, low_priority: bool = False, idle_seconds: int = 900,
                 subnet_id: Optional[str] = None, compute_name: Optional[str] = None,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudft:azure:GpuCluster", name, None, opts)
        isolated = bool(subnet_id) or workspace.managed_network != "Disabled"
        props: dict = {"vm_size": vm_size, "vm_priority": "LowPriority" if low_priority else "Dedicated",
                       "scale_settings": ml.ScaleSettingsArgs(
                           max_node_count=max_nodes, min_node_count=0,
                           node_idle_time_before_scale_down=f"PT{int(idle_seconds)}S"),
                       "os_type": "Linux", "remote_login_port_public_access": "Disabled",
                       "enable_node_public_ip": not isolated}
        if subnet_id:
            props["subnet"] = ml.ResourceIdArgs(id=subnet_id)
        self.compute = ml.Compute(
            f"{name}-compute", compute_name=compute_name or f"{name}-gpu"[:24], resource_group_name=resource_group_name,
            workspace_name=workspace.workspace_name, location=location, identity={"type": "SystemAssigned"},
            properties=ml.AmlComputeArgs(compute_type="AmlCompute", description="cloudft GPU training cluster",
                                         properties=ml.AmlComputePropertiesArgs(**props)),
            opts=pulumi.ResourceOptions(parent=self))
        principal = self.compute.identity.apply(lambda i: i.principal_id if i else None)
        for role, scope, suffix in ((ROLE_ACR_PULL, workspace.registry.id, "acr-pull"),
                                    (ROLE_STORAGE_BLOB_DATA_CONTRIBUTOR, workspace.storage.id, "blob-data"),
                                    (ROLE_KEY_VAULT_SECRETS_USER, workspace.vault.id, "kv-secrets")):
            authorization.RoleAssignment(
                f"{name}-{suffix}", principal_id=principal, principal_type="ServicePrincipal", scope=scope,
                role_definition_id=pulumi.Output.concat("/subscriptions/", subscription_id,
                                                        "/providers/Microsoft.Authorization/roleDefinitions/", role),
                opts=pulumi.ResourceOptions(parent=self))
        self.compute_name = self.compute.name
        self.register_outputs({"compute_name": self.compute_name})


def _probe(initial_delay_s: int = 600) -> "ml.ProbeSettingsArgs":
    """A generous probe: loading a base model and adapters takes minutes."""
    return ml.ProbeSettingsArgs(initial_delay=f"PT{initial_delay_s}S", period="PT10S", timeout="PT10S",
                                failure_threshold=30, success_threshold=1)


class ManagedEndpoint(pulumi.ComponentResource):
    """A managed online endpoint (key auth, system-assigned identity) and, when a registered model and environment are
    given, one managed deployment. cloudft's `deploy` usually creates deployments itself (they churn faster than
    infrastructure). Output: `endpoint_name`."""

    def __init__(self, name: str, *, workspace_name: pulumi.Input[str], resource_group_name: pulumi.Input[str],
                 location: pulumi.Input[str], endpoint_name: Optional[str] = None,
                 public_network_access: str = "Enabled", model_id: Optional[str] = None,
                 environment_id: Optional[str] = None, instance_type: str = "Standard_NC24ads_A100_v4",
                 instance_count: int = 1, environment_variables: Optional[Mapping[str, str]] = None,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudft:azure:ManagedEndpoint", name, None, opts)
        common = {"resource_group_name": resource_group_name, "workspace_name": workspace_name, "location": location}
        self.endpoint = ml.OnlineEndpoint(
            f"{name}-endpoint", endpoint_name=endpoint_name or f"{name}-ep"[:32], identity={"type": "SystemAssigned"},
            properties={"auth_mode": "Key", "public_network_access": public_network_access,
                        "description": "cloudft adapter endpoint"},
            **common, opts=pulumi.ResourceOptions(parent=self, custom_timeouts=pulumi.CustomTimeouts(create="30m")))
        self.deployment = None
        if model_id and environment_id:
            self.deployment = ml.OnlineDeployment(
                f"{name}-deployment", endpoint_name=self.endpoint.name, deployment_name="default",
                sku={"name": "Default", "capacity": instance_count},
                # A Union-typed property: plain dicts would go out with snake_case keys, so use the Args class.
                properties=ml.ManagedOnlineDeploymentArgs(
                    endpoint_compute_type="Managed", model=model_id, environment_id=environment_id,
                    instance_type=instance_type, app_insights_enabled=True,
                    environment_variables=dict(environment_variables or {}), egress_public_network_access="Enabled",
                    readiness_probe=_probe(), liveness_probe=_probe(),
                    request_settings=ml.OnlineRequestSettingsArgs(request_timeout="PT90S",
                                                                  max_concurrent_requests_per_instance=4)),
                **common, opts=pulumi.ResourceOptions(parent=self, custom_timeouts=pulumi.CustomTimeouts(
                    create="60m", update="60m")))
        self.endpoint_name = self.endpoint.name
        self.register_outputs({"endpoint_name": self.endpoint_name})
