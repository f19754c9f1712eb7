"""Azure ML building blocks (pulumi-azure-native v3; the `properties=` argument shape of the pinned SDK).

Identities and role assignments follow `cloudft.providers.azure.access` (the one model of who needs what);
network settings follow `NetworkOptions` (safe defaults where the quickstart still works, a private option).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

import pulumi
from pulumi_azure_native import (applicationinsights, authorization, containerregistry, keyvault,
                                 machinelearningservices as ml, managedidentity, operationalinsights, storage)

from cloudft.providers.azure.access import ACTORS, ROLES

#: Hosts a private (approved-outbound) workspace lets jobs reach: Python packages and Hugging Face models.
#: learn.microsoft.com/azure/machine-learning/how-to-managed-network ("Access public machine learning packages",
#: "Use HuggingFace models"); FQDN rules run on an Azure Firewall, which is billed.
PRIVATE_OUTBOUND_FQDNS = ("pypi.org", "*.pythonhosted.org", "anaconda.com", "*.anaconda.com", "*.anaconda.org",
                          "pytorch.org", "*.pytorch.org", "huggingface.co", "cdn-lfs.huggingface.co", "*.hf.co")


def alnum(text: str, max_len: int) -> str:
    """Lowercase letters and digits only (storage account and registry names)."""
    return "".join(c for c in text.lower() if c.isalnum())[:max_len]


@dataclass
class NetworkOptions:
    """How the workspace and its resources are reached.

    `quickstart` (default): the workspace, storage, Key Vault and endpoints answer on public endpoints (the CLI on a
    laptop uploads code, sets secrets and invokes endpoints), but storage takes no shared keys (Entra ID only), and
    with `allowed_ip_ranges` storage and Key Vault refuse every other address (the managed network then reaches
    them through private endpoints). `private`: public network access off everywhere, managed network with
    approved outbound only (private endpoints to storage, Key Vault and registry; FQDN rules for packages and
    models), a Premium registry (private endpoints need it) and image builds on the cluster. The CLI then has to run
    from a network that reaches the workspace's private endpoint.
    """

    mode: str = "quickstart"
    allowed_ip_ranges: list[str] = field(default_factory=list)
    outbound_fqdns: list[str] = field(default_factory=lambda: list(PRIVATE_OUTBOUND_FQDNS))
    shared_key_access: bool = False
    managed_network: Optional[str] = None  # override of the mode's isolation mode
    public_network_access: Optional[str] = None  # override of the mode's workspace setting

    @property
    def private(self) -> bool:
        return self.mode == "private"

    @property
    def isolation_mode(self) -> str:
        return self.managed_network or ("AllowOnlyApprovedOutbound" if self.private else "AllowInternetOutbound")

    @property
    def public(self) -> str:
        """publicNetworkAccess of the workspace, storage, Key Vault, registry and endpoints."""
        return self.public_network_access or ("Disabled" if self.private else "Enabled")


class Identities(pulumi.ComponentResource):
    """The user-assigned identities cloudft's workloads run as (`cloudft.providers.azure.access`): `train` for jobs
    and clusters (serverless compute supports no system-assigned identity), `serve` for online endpoints."""

    def __init__(self, name: str, *, resource_group_name: pulumi.Input[str], location: pulumi.Input[str],
                 tags: Optional[dict[str, str]] = None, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudft:azure:Identities", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        common = {"resource_group_name": resource_group_name, "location": location, "tags": tags}
        self.train = managedidentity.UserAssignedIdentity(f"{name}-train", resource_name_=f"{name}-train",
                                                          **common, opts=child)
        self.serve = managedidentity.UserAssignedIdentity(f"{name}-serve", resource_name_=f"{name}-serve",
                                                          **common, opts=child)
        self.register_outputs({"train_client_id": self.train.client_id, "serve_client_id": self.serve.client_id})


def _user_assigned(*identities: managedidentity.UserAssignedIdentity, system: bool = False) -> dict:
    kind = "SystemAssigned,UserAssigned" if system else "UserAssigned"
    return {"type": kind, "user_assigned_identities": [i.id for i in identities]}


class MlWorkspace(pulumi.ComponentResource):
    """Storage account (Entra ID only: no shared keys, no public blob access, TLS 1.2, HTTPS only, infrastructure
    encryption, blob versioning and soft delete), Key Vault (RBAC, purge protection), container registry (no admin
    user), Log Analytics + Application Insights, and an Azure ML workspace with identity-based system datastores, a
    system-assigned identity plus the `train` user-assigned identity (what serverless jobs run as), and a managed
    network, per `NetworkOptions`.

    Outputs: `workspace_name`, `storage_account_name`, `key_vault_name`, `registry_name`, `registry_login_server`.
    """

    def __init__(self, name: str, *, resource_group_name: pulumi.Input[str], location: pulumi.Input[str],
                 tenant_id: pulumi.Input[str], identity: managedidentity.UserAssignedIdentity,
                 network: Optional[NetworkOptions] = None, registry_sku: str = "Basic",
                 image_build_compute: Optional[str] = None, tags: Optional[dict[str, str]] = None,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudft:azure:MlWorkspace", name, None, opts)
        net = network or NetworkOptions()
        child = pulumi.ResourceOptions(parent=self)
        common = {"resource_group_name": resource_group_name, "location": location, "tags": tags}
        ip_rules = list(net.allowed_ip_ranges)
        self.storage = storage.StorageAccount(
            alnum(f"{name}sa", 18), kind="StorageV2", sku={"name": "Standard_LRS"},
            allow_blob_public_access=False, minimum_tls_version="TLS1_2", enable_https_traffic_only=True,
            allow_cross_tenant_replication=False, allow_shared_key_access=net.shared_key_access,
            default_to_o_auth_authentication=not net.shared_key_access, public_network_access=net.public,
            network_rule_set=({"default_action": "Deny", "bypass": "AzureServices",
                               "ip_rules": [{"i_p_address_or_range": ip, "action": "Allow"} for ip in ip_rules]}
                              if ip_rules else None),
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
            "soft_delete_retention_in_days": 90, "public_network_access": net.public,
            **({"network_acls": {"default_action": "Deny", "bypass": "AzureServices",
                                 "ip_rules": [{"value": ip} for ip in ip_rules]}} if ip_rules else {})},
            **common, opts=child)
        # Private endpoints need a Premium registry; public access can only be turned off there.
        sku = "Premium" if net.private else registry_sku
        self.registry = containerregistry.Registry(
            alnum(f"{name}acr", 40), sku={"name": sku}, admin_user_enabled=False, anonymous_pull_enabled=False,
            **({"public_network_access": net.public} if sku == "Premium" else {}), **common, opts=child)
        self.workspace = ml.Workspace(
            f"{name}-ws", identity=_user_assigned(identity, system=True), sku={"name": "Basic", "tier": "Basic"},
            storage_account=self.storage.id, key_vault=self.vault.id, application_insights=self.insights.id,
            container_registry=self.registry.id, v1_legacy_mode=False, public_network_access=net.public,
            system_datastores_auth_mode="Identity" if not net.shared_key_access else "AccessKey",
            managed_network=ml.ManagedNetworkSettingsArgs(isolation_mode=net.isolation_mode,
                                                          outbound_rules=self._outbound_rules(net) or None),
            image_build_compute=image_build_compute if net.private else None,
            friendly_name=f"cloudft {name}",
            # The storage account and key vault of a workspace cannot change after creation.
            **common, opts=pulumi.ResourceOptions(parent=self, depends_on=[self.blob_service]))
        self.network = net
        self.managed_network = net.isolation_mode
        self.workspace_name = self.workspace.name
        self.storage_account_name = self.storage.name
        self.key_vault_name = self.vault.name
        self.registry_name = self.registry.name
        self.registry_login_server = self.registry.login_server
        self.register_outputs({"workspace_name": self.workspace_name, "storage_account_name": self.storage_account_name,
                               "key_vault_name": self.key_vault_name, "registry_name": self.registry_name})

    def _outbound_rules(self, net: NetworkOptions) -> dict:
        """FQDN rules (approved outbound), and private endpoints to storage and Key Vault when their firewalls
        admit only `allowed_ip_ranges` (the managed network creates them itself for resources with public access
        off, and always in approved-outbound mode: how-to-managed-network, "List of required rules")."""
        rules: dict = {}
        if net.isolation_mode == "AllowOnlyApprovedOutbound":
            for i, fqdn in enumerate(net.outbound_fqdns):
                rules[f"cloudft-fqdn-{i}"] = ml.FqdnOutboundRuleArgs(type="FQDN", category="UserDefined",
                                                                    destination=fqdn)
        elif net.allowed_ip_ranges and net.isolation_mode != "Disabled":
            for target, resource in (("blob", self.storage), ("file", self.storage), ("vault", self.vault)):
                rules[f"cloudft-pe-{target}"] = ml.PrivateEndpointOutboundRuleArgs(
                    type="PrivateEndpoint", category="UserDefined",
                    destination=ml.PrivateEndpointDestinationArgs(service_resource_id=resource.id,
                                                                  subresource_target=target))
        return rules


def role_id(subscription_id: pulumi.Input[str], role: str) -> pulumi.Output[str]:
    return pulumi.Output.concat("/subscriptions/", subscription_id, "/providers/Microsoft.Authorization/roleDefinitions/",
                                ROLES[role].id)


class RoleGrants(pulumi.ComponentResource):
    """Exactly the role assignments of `cloudft.providers.azure.access.ACTORS`: every actor's principal gets every
    grant of the model on the resource it names. `granted` lists them by name (the `role_assignments` output that
    preflight reads)."""

    def __init__(self, name: str, *, principals: Mapping[str, tuple[list[pulumi.Input[str]], str]],
                 scopes: Mapping[str, pulumi.Input[str]], subscription_id: pulumi.Input[str],
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudft:azure:RoleGrants", name, None, opts)
        self.assignments: list[authorization.RoleAssignment] = []
        self.granted: list[dict[str, str]] = []
        for act in ACTORS:
            ids, principal_type = principals.get(act.name, ([], None))
            for g in act.grants:
                for i, principal in enumerate(ids):
                    suffix = f"{act.name}-{g.scope}-{alnum(g.role, 24)}" + (f"-{i}" if i else "")
                    self.assignments.append(authorization.RoleAssignment(
                        f"{name}-{suffix}", principal_id=principal, scope=scopes[g.scope],
                        role_definition_id=role_id(subscription_id, g.role),
                        description=f"cloudft {act.name}: {g.why}", principal_type=principal_type,
                        opts=pulumi.ResourceOptions(parent=self)))
                if ids:
                    self.granted.append({"actor": act.name, "role": g.role, "scope": g.scope})
        self.register_outputs({})


class GpuCluster(pulumi.ComponentResource):
    """An AmlCompute GPU cluster that scales to zero after `idle_seconds`, dedicated or low-priority nodes, no node
    public IPs (needs the workspace's managed network or a subnet), SSH port closed, running as the `train`
    user-assigned identity (clusters take one system-assigned or user-assigned identities, not both).

    Output: `compute_name`.
    """

    def __init__(self, name: str, *, workspace: MlWorkspace, resource_group_name: pulumi.Input[str],
                 location: pulumi.Input[str], identity: managedidentity.UserAssignedIdentity, vm_size: str,
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
            workspace_name=workspace.workspace_name, location=location, identity=_user_assigned(identity),
            properties=ml.AmlComputeArgs(compute_type="AmlCompute", description="cloudft GPU training cluster",
                                         properties=ml.AmlComputePropertiesArgs(**props)),
            opts=pulumi.ResourceOptions(parent=self))
        self.compute_name = self.compute.name
        self.register_outputs({"compute_name": self.compute_name})


def _probe(initial_delay_s: int = 600) -> "ml.ProbeSettingsArgs":
    """A generous probe: loading a base model and adapters takes minutes."""
    return ml.ProbeSettingsArgs(initial_delay=f"PT{initial_delay_s}S", period="PT10S", timeout="PT10S",
                                failure_threshold=30, success_threshold=1)


class ManagedEndpoint(pulumi.ComponentResource):
    """A managed online endpoint (key auth) running as the `serve` user-assigned identity (granted registry, storage
    and Key Vault access by `RoleGrants`) and, when a registered model and environment are given, one managed
    deployment. cloudft's `deploy` usually creates deployments itself (they churn faster than infrastructure).
    Output: `endpoint_name`."""

    def __init__(self, name: str, *, workspace_name: pulumi.Input[str], resource_group_name: pulumi.Input[str],
                 location: pulumi.Input[str], identity: managedidentity.UserAssignedIdentity,
                 endpoint_name: Optional[str] = None, public_network_access: str = "Enabled",
                 model_id: Optional[str] = None, environment_id: Optional[str] = None,
                 instance_type: str = "Standard_NC24ads_A100_v4", instance_count: int = 1,
                 environment_variables: Optional[Mapping[str, str]] = None,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudft:azure:ManagedEndpoint", name, None, opts)
        common = {"resource_group_name": resource_group_name, "workspace_name": workspace_name, "location": location}
        self.endpoint = ml.OnlineEndpoint(
            f"{name}-endpoint", endpoint_name=endpoint_name or f"{name}-ep"[:32], identity=_user_assigned(identity),
            properties={"auth_mode": "Key", "public_network_access": public_network_access,
                        "description": "cloudft adapter endpoint"},
            **common, opts=pulumi.ResourceOptions(parent=self, custom_timeouts=pulumi.CustomTimeouts(create="30m")))
        self.deployment = None
        if model_id and environment_id:
            env = {**dict(environment_variables or {}), "AZURE_CLIENT_ID": identity.client_id}
            self.deployment = ml.OnlineDeployment(
                f"{name}-deployment", endpoint_name=self.endpoint.name, deployment_name="default",
                sku={"name": "Default", "capacity": instance_count},
                # A Union-typed property: plain dicts would go out with snake_case keys, so use the Args class.
                properties=ml.ManagedOnlineDeploymentArgs(
                    endpoint_compute_type="Managed", model=model_id, environment_id=environment_id,
                    instance_type=instance_type, app_insights_enabled=True, environment_variables=env,
                    egress_public_network_access="Disabled" if public_network_access == "Disabled" else "Enabled",
                    readiness_probe=_probe(), liveness_probe=_probe(),
                    request_settings=ml.OnlineRequestSettingsArgs(request_timeout="PT90S",
                                                                  max_concurrent_requests_per_instance=4)),
                **common, opts=pulumi.ResourceOptions(parent=self, custom_timeouts=pulumi.CustomTimeouts(
                    create="60m", update="60m")))
        self.endpoint_name = self.endpoint.name
        self.register_outputs({"endpoint_name": self.endpoint_name})
