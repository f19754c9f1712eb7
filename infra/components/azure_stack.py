"""The `infra/azure` program: resource group, Azure ML workspace and its resources, GPU cluster, optional online
endpoint, and the stack outputs that `cloudft submit --provider azure --stack NAME` reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from pulumi_azure_native import authorization, resources

from cloudft.infra.contract import AZURE_OUTPUT_KEYS

from .azure_ml import GpuCluster, Identities, ManagedEndpoint, MlWorkspace, NetworkOptions, RoleGrants
from .settings import ConfigReader, safe_name

MANAGED_NETWORK_MODES = ("Disabled", "AllowInternetOutbound", "AllowOnlyApprovedOutbound")
NETWORK_MODES = ("quickstart", "private")


@dataclass
class ClusterSettings:
    vm_size: str = "Standard_NC24ads_A100_v4"
    max_nodes: int = 2
    low_priority: bool = False
    idle_seconds: int = 900
    subnet_id: Optional[str] = None
    name: Optional[str] = None


@dataclass
class EndpointSettings:
    enabled: bool = False
    name: Optional[str] = None
    public_network_access: Optional[str] = None  # default: the network mode's (quickstart Enabled, private Disabled)
    model_id: Optional[str] = None
    environment_id: Optional[str] = None
    instance_type: str = "Standard_NC24ads_A100_v4"
    instance_count: int = 1
    environment_variables: dict[str, str] = field(default_factory=dict)


@dataclass
class AzureStackSettings:
    """Everything the Azure program reads from `Pulumi.<stack>.yaml` (see docs/infra.md)."""

    name: str = "cloudft"
    location: str = "eastus"
    resource_group: Optional[str] = None
    registry_sku: str = "Basic"
    ml_registry: Optional[str] = None
    network: str = "quickstart"
    managed_network: Optional[str] = None  # override of the network mode's isolation mode
    public_network_access: Optional[str] = None  # override of the network mode's public access
    allowed_ip_ranges: list[str] = field(default_factory=list)
    outbound_fqdns: Optional[list[str]] = None
    shared_key_access: bool = False
    #: Entra object ids of the people / pipelines that run cloudft (the `cli_user` actor); default: the deployer.
    users: Optional[list[str]] = None
    users_principal_type: str = "User"  # "ServicePrincipal" when a pipeline runs cloudft, "Group" for a group
    tags: dict[str, str] = field(default_factory=dict)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    endpoint: EndpointSettings = field(default_factory=EndpointSettings)

    def __post_init__(self) -> None:
        if self.network not in NETWORK_MODES:
            raise ValueError(f"cloudft:network must be one of {', '.join(NETWORK_MODES)}")
        if self.managed_network is not None and self.managed_network not in MANAGED_NETWORK_MODES:
            raise ValueError(f"cloudft:managedNetwork must be one of {', '.join(MANAGED_NETWORK_MODES)}")
        if self.users_principal_type not in ("User", "ServicePrincipal", "Group"):
            raise ValueError("cloudft:usersPrincipalType must be User, ServicePrincipal or Group")
        if self.public_network_access not in (None, "Enabled", "Disabled"):
            raise ValueError("cloudft:publicNetworkAccess must be Enabled or Disabled")
        if self.cluster.idle_seconds < 60:
            raise ValueError("cloudft:cluster.idleSeconds must be at least 60")

    @classmethod
    def from_config(cls, config: Any, stack: str = "dev", location: Optional[str] = None) -> "AzureStackSettings":
        c = ConfigReader(config)
        cl, ep = c.section("cluster"), c.section("endpoint")
        return cls(
            name=safe_name(c.get("name", f"cloudft-{stack}"), 16),
            location=c.get("location", location or "eastus"),
            resource_group=c.get("resourceGroup"),
            registry_sku=c.get("registrySku", "Basic"),
            ml_registry=c.get("mlRegistry"),
            network=c.get("network", "quickstart"),
            managed_network=c.get("managedNetwork"),
            public_network_access=c.get("publicNetworkAccess"),
            allowed_ip_ranges=[str(ip) for ip in c.get("allowedIpRanges", [])],
            outbound_fqdns=c.get("outboundFqdns"),
            shared_key_access=bool(c.get("sharedKeyAccess", False)),
            users=c.get("users"),
            users_principal_type=c.get("usersPrincipalType", "User"),
            tags=dict(c.get("tags", {})),
            cluster=ClusterSettings(vm_size=cl.get("vmSize", "Standard_NC24ads_A100_v4"),
                                    max_nodes=int(cl.get("maxNodes", 2)),
                                    low_priority=bool(cl.get("lowPriority", False)),
                                    idle_seconds=int(cl.get("idleSeconds", 900)), subnet_id=cl.get("subnetId"),
                                    name=cl.get("name")),
            endpoint=EndpointSettings(enabled=bool(ep.get("enabled", False)), name=ep.get("name"),
                                      public_network_access=ep.get("publicNetworkAccess"),
                                      model_id=ep.get("modelId"), environment_id=ep.get("environmentId"),
                                      instance_type=ep.get("instanceType", "Standard_NC24ads_A100_v4"),
                                      instance_count=int(ep.get("instanceCount", 1)),
                                      environment_variables={str(k): str(v) for k, v in
                                                             dict(ep.get("environmentVariables", {})).items()}),
        )


    def network_options(self) -> NetworkOptions:
        net = NetworkOptions(mode=self.network, allowed_ip_ranges=list(self.allowed_ip_ranges),
                             shared_key_access=self.shared_key_access, managed_network=self.managed_network,
                             public_network_access=self.public_network_access)
        if self.outbound_fqdns is not None:
            net.outbound_fqdns = list(self.outbound_fqdns)
        return net


def build_azure_stack(settings: AzureStackSettings) -> dict[str, Any]:
    """Declare the Azure resources; returns the stack outputs (keys `AZURE_OUTPUT_KEYS`, plus a few extras)."""
    tags = {"managed-by": "cloudft", **settings.tags}
    name = settings.name
    client = authorization.get_client_config_output()
    group = resources.ResourceGroup(f"{name}-rg", resource_group_name=settings.resource_group,
                                    location=settings.location, tags=tags)
    ids = Identities(name, resource_group_name=group.name, location=settings.location, tags=tags)
    cl = settings.cluster
    compute_name = cl.name or f"{name}-gpu"[:24]
    net = settings.network_options()
    ws = MlWorkspace(name, resource_group_name=group.name, location=settings.location, tenant_id=client.tenant_id,
                     identity=ids.train, network=net, registry_sku=settings.registry_sku,
                     image_build_compute=compute_name, tags=tags)
    cluster = GpuCluster(name, workspace=ws, resource_group_name=group.name, location=settings.location,
                         identity=ids.train, vm_size=cl.vm_size, max_nodes=cl.max_nodes, low_priority=cl.low_priority,
                         idle_seconds=cl.idle_seconds, subnet_id=cl.subnet_id, compute_name=compute_name)
    users = settings.users if settings.users is not None else [client.object_id]
    grants = RoleGrants(name, subscription_id=client.subscription_id,
                        principals={"training": ([ids.train.principal_id], "ServicePrincipal"),
                                    "endpoint": ([ids.serve.principal_id], "ServicePrincipal"),
                                    "cli_user": (list(users), settings.users_principal_type)},
                        scopes={"workspace": ws.workspace.id, "storage": ws.storage.id, "key_vault": ws.vault.id,
                                "registry": ws.registry.id, "endpoint_identity": ids.serve.id})
    outputs: dict[str, Any] = {
        "subscription_id": client.subscription_id, "resource_group": group.name, "workspace": ws.workspace_name,
        "location": settings.location, "compute": cluster.compute_name, "key_vault": ws.key_vault_name,
        "storage_account": ws.storage_account_name,
        # `registry` is an Azure ML registry (shared models/environments), not the workspace's ACR: passed through.
        "registry": settings.ml_registry, "container_registry": ws.registry_name,
        "registry_login_server": ws.registry_login_server, "endpoint_name": None,
        # who runs as what, and what the stack granted (read by `cloudft plan/submit --stack` preflight)
        "identity_client_id": ids.train.client_id, "endpoint_identity_id": ids.serve.id,
        "endpoint_identity_client_id": ids.serve.client_id, "role_assignments": grants.granted,
        "compute_vm_size": cl.vm_size, "compute_tier": "LowPriority" if cl.low_priority else "Dedicated",
        "network": net.mode, "system_datastores_auth_mode": "AccessKey" if net.shared_key_access else "Identity",
    }
    ep = settings.endpoint
    if ep.enabled:
        endpoint = ManagedEndpoint(name, workspace_name=ws.workspace_name, resource_group_name=group.name,
                                   location=settings.location, endpoint_name=ep.name, identity=ids.serve,
                                   public_network_access=ep.public_network_access or net.public, model_id=ep.model_id,
                                   environment_id=ep.environment_id, instance_type=ep.instance_type,
                                   instance_count=ep.instance_count, environment_variables=ep.environment_variables)
        outputs["endpoint_name"] = endpoint.endpoint_name
    assert set(AZURE_OUTPUT_KEYS) <= set(outputs), "every contract key is exported"
    return outputs
