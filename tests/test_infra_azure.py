"""The infra/azure program under Pulumi mocks: resources, their properties, and the wired stack outputs."""

from __future__ import annotations

import json

import pytest
from infra_fixtures import SUBSCRIPTION, TENANT, run_program

from cloudft.infra.contract import AZURE_OUTPUT_KEYS
from cloudft.providers.azure import access
from infra.components.azure_ml import PRIVATE_OUTBOUND_FQDNS
from infra.components.azure_stack import AzureStackSettings, ClusterSettings, EndpointSettings, build_azure_stack

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _azure(settings: AzureStackSettings):
    return run_program(lambda: build_azure_stack(settings))


@pytest.fixture(scope="module")
def base():
    return _azure(AzureStackSettings(name="cft", location="westeurope",
                                     cluster=ClusterSettings(low_priority=True, max_nodes=4, idle_seconds=600)))


def test_outputs_are_the_contract_and_wired_to_resources(base):
    mocks, out = base
    assert set(AZURE_OUTPUT_KEYS) <= set(out)
    assert out["subscription_id"] == SUBSCRIPTION and out["location"] == "westeurope"
    assert out["resource_group"] == mocks.one(":ResourceGroup").outputs["name"]
    assert out["workspace"] == mocks.one("machinelearningservices:Workspace").outputs["name"]
    assert out["compute"] == mocks.one(":Compute").outputs["name"] == "cft-gpu"
    assert out["key_vault"] == mocks.one(":Vault").outputs["name"]
    assert out["storage_account"] == mocks.one(":StorageAccount").outputs["name"]
    assert out["container_registry"] == mocks.one(":Registry").outputs["name"]
    assert out["registry_login_server"] == mocks.one(":Registry").outputs["loginServer"]
    assert out["registry"] is None  # an Azure ML registry is only passed through (cloudft:mlRegistry)
    assert out["endpoint_name"] is None and mocks.of_type(":OnlineEndpoint") == []


def test_workspace_links_its_resources_with_a_managed_identity(base):
    mocks, _ = base
    ws = mocks.one("machinelearningservices:Workspace").inputs
    train_id = next(r.id for r in mocks.of_type(":UserAssignedIdentity") if r.name == "cft-train")
    # system-assigned for the workspace itself, plus the user-assigned identity serverless jobs run as
    assert ws["identity"] == {"type": "SystemAssigned,UserAssigned", "userAssignedIdentities": [train_id]}
    assert "primaryUserAssignedIdentity" not in ws
    assert ws["systemDatastoresAuthMode"] == "Identity" and ws["publicNetworkAccess"] == "Enabled"
    assert ws["storageAccount"] == mocks.one(":StorageAccount").id
    assert ws["keyVault"] == mocks.one(":Vault").id
    assert ws["containerRegistry"] == mocks.one(":Registry").id
    assert ws["applicationInsights"] == mocks.one("applicationinsights:Component").id
    assert ws["managedNetwork"]["isolationMode"] == "AllowInternetOutbound"
    assert "outboundRules" not in ws["managedNetwork"]
    insights = mocks.one("applicationinsights:Component").inputs
    assert insights["workspaceResourceId"] == mocks.one("operationalinsights:Workspace").id


def test_storage_vault_registry_settings(base):
    mocks, _ = base
    sa = mocks.one(":StorageAccount").inputs
    assert (sa["allowBlobPublicAccess"], sa["minimumTlsVersion"], sa["enableHttpsTrafficOnly"]) == \
        (False, "TLS1_2", True)
    assert sa["allowSharedKeyAccess"] is False and sa["defaultToOAuthAuthentication"] is True
    assert sa["encryption"]["requireInfrastructureEncryption"] is True
    blob = mocks.one(":BlobServiceProperties").inputs
    assert blob["isVersioningEnabled"] is True and blob["accountName"] == mocks.one(":StorageAccount").outputs["name"]
    kv = mocks.one(":Vault").inputs["properties"]
    assert kv["enableRbacAuthorization"] is True and kv["enablePurgeProtection"] is True and kv["tenantId"] == TENANT
    assert mocks.one(":Registry").inputs["adminUserEnabled"] is False


def test_gpu_cluster_scales_to_zero_low_priority_without_public_ip(base):
    mocks, _ = base
    compute = mocks.one(":Compute").inputs
    assert compute["workspaceName"] == mocks.one("machinelearningservices:Workspace").outputs["name"]
    props = compute["properties"]
    assert props["computeType"] == "AmlCompute"
    aml = props["properties"]
    assert aml["vmPriority"] == "LowPriority" and aml["vmSize"] == "Standard_NC24ads_A100_v4"
    assert aml["scaleSettings"] == {"minNodeCount": 0, "maxNodeCount": 4, "nodeIdleTimeBeforeScaleDown": "PT600S"}
    assert aml["enableNodePublicIp"] is False and aml["remoteLoginPortPublicAccess"] == "Disabled"


def _identity(mocks, name):
    return next(r for r in mocks.of_type(":UserAssignedIdentity") if r.name == name)


def _expected_grants(mocks, users):
    """The access model, resolved to the mocked resources: {(principal, role id, scope id)}."""
    principals = {"training": [_identity(mocks, "cft-train").outputs["principalId"]],
                  "endpoint": [_identity(mocks, "cft-serve").outputs["principalId"]], "cli_user": users}
    scopes = {"workspace": mocks.one("machinelearningservices:Workspace").id, "storage": mocks.one(":StorageAccount").id,
              "key_vault": mocks.one(":Vault").id, "registry": mocks.one(":Registry").id,
              "endpoint_identity": _identity(mocks, "cft-serve").id}
    return {(p, f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{g.role_id}",
             scopes[g.scope]) for a in access.ACTORS for g in a.grants for p in principals[a.name]}


def test_the_stack_grants_exactly_the_access_model(base):
    mocks, out = base
    granted = [(r.inputs["principalId"], r.inputs["roleDefinitionId"], r.inputs["scope"])
               for r in mocks.of_type(":RoleAssignment")]
    assert len(granted) == len(set(granted)) == len(access.assignments())
    assert set(granted) == _expected_grants(mocks, ["object"])  # the deployer (getClientConfig objectId)
    types = {r.inputs["principalId"]: r.inputs.get("principalType") for r in mocks.of_type(":RoleAssignment")}
    assert types[_identity(mocks, "cft-train").outputs["principalId"]] == "ServicePrincipal"
    assert types["object"] == "User"  # cloudft:usersPrincipalType (ServicePrincipal for a pipeline)
    assert out["role_assignments"] == [{"actor": a, "role": r, "scope": sc} for a, r, sc in access.assignments()]


def test_named_users_get_the_cli_grants_instead_of_the_deployer():
    mocks, _ = _azure(AzureStackSettings(name="cft", users=["u-1", "u-2"]))
    granted = {(r.inputs["principalId"], r.inputs["roleDefinitionId"], r.inputs["scope"])
               for r in mocks.of_type(":RoleAssignment")}
    assert granted == _expected_grants(mocks, ["u-1", "u-2"])


def test_jobs_cluster_and_endpoint_run_as_user_assigned_identities(base):
    mocks, out = base
    train, serve = _identity(mocks, "cft-train"), _identity(mocks, "cft-serve")
    # clusters take one system-assigned or several user-assigned identities, not both
    assert mocks.one(":Compute").inputs["identity"] == {"type": "UserAssigned", "userAssignedIdentities": [train.id]}
    assert out["identity_client_id"] == train.outputs["clientId"]
    assert (out["endpoint_identity_id"], out["endpoint_identity_client_id"]) == (serve.id, serve.outputs["clientId"])
    assert (out["compute_vm_size"], out["compute_tier"], out["network"]) == \
        ("Standard_NC24ads_A100_v4", "LowPriority", "quickstart")


def test_dedicated_cluster_and_disabled_network_without_subnet_needs_public_ip():
    mocks, _ = _azure(AzureStackSettings(name="cft", managed_network="Disabled"))
    aml = mocks.one(":Compute").inputs["properties"]["properties"]
    assert aml["vmPriority"] == "Dedicated" and aml["enableNodePublicIp"] is True  # flagged by the security rules
    mocks, _ = _azure(AzureStackSettings(name="cft", managed_network="Disabled",
                                         cluster=ClusterSettings(subnet_id="/subscriptions/x/subnets/s")))
    aml = mocks.one(":Compute").inputs["properties"]["properties"]
    assert aml["enableNodePublicIp"] is False and aml["subnet"] == {"id": "/subscriptions/x/subnets/s"}


def test_endpoint_and_deployment():
    mocks, out = _azure(AzureStackSettings(name="cft", endpoint=EndpointSettings(
        enabled=True, name="cft-adapters", model_id="azureml://m/1", environment_id="azureml://e/1",
        instance_type="Standard_NC6s_v3", environment_variables={"VLLM_ARGS": "--enable-lora"})))
    ep = mocks.one(":OnlineEndpoint")
    serve = _identity(mocks, "cft-serve")
    assert ep.inputs["properties"]["authMode"] == "Key"
    assert ep.inputs["identity"] == {"type": "UserAssigned", "userAssignedIdentities": [serve.id]}
    assert out["endpoint_name"] == "cft-adapters" == ep.outputs["name"]
    dep = mocks.one(":OnlineDeployment").inputs
    assert dep["endpointName"] == "cft-adapters" and dep["sku"] == {"name": "Default", "capacity": 1}
    props = dep["properties"]
    assert (props["endpointComputeType"], props["model"], props["environmentId"], props["instanceType"]) == \
        ("Managed", "azureml://m/1", "azureml://e/1", "Standard_NC6s_v3")
    assert props["readinessProbe"]["initialDelay"] == "PT600S"
    # score.py's DefaultAzureCredential picks the endpoint's user-assigned identity by client id
    assert props["environmentVariables"] == {"VLLM_ARGS": "--enable-lora", "AZURE_CLIENT_ID": serve.outputs["clientId"]}


def test_private_network_option():
    mocks, _ = _azure(AzureStackSettings(name="cft", network="private", endpoint=EndpointSettings(enabled=True)))
    ws = mocks.one("machinelearningservices:Workspace").inputs
    assert ws["publicNetworkAccess"] == "Disabled" and ws["imageBuildCompute"] == "cft-gpu"
    managed = ws["managedNetwork"]
    assert managed["isolationMode"] == "AllowOnlyApprovedOutbound"
    assert sorted(r["destination"] for r in managed["outboundRules"].values()) == sorted(PRIVATE_OUTBOUND_FQDNS)
    assert all(r["type"] == "FQDN" for r in managed["outboundRules"].values())
    assert mocks.one(":StorageAccount").inputs["publicNetworkAccess"] == "Disabled"
    assert mocks.one(":Vault").inputs["properties"]["publicNetworkAccess"] == "Disabled"
    acr = mocks.one(":Registry").inputs
    assert acr["sku"] == {"name": "Premium"} and acr["publicNetworkAccess"] == "Disabled"
    assert mocks.one(":OnlineEndpoint").inputs["properties"]["publicNetworkAccess"] == "Disabled"


def test_allowed_ip_ranges_close_storage_and_vault_and_add_private_endpoints():
    mocks, _ = _azure(AzureStackSettings(name="cft", allowed_ip_ranges=["203.0.113.0/24"]))
    sa = mocks.one(":StorageAccount").inputs["networkRuleSet"]
    assert sa == {"defaultAction": "Deny", "bypass": "AzureServices",
                  "ipRules": [{"iPAddressOrRange": "203.0.113.0/24", "action": "Allow"}]}
    kv = mocks.one(":Vault").inputs["properties"]["networkAcls"]
    assert kv == {"defaultAction": "Deny", "bypass": "AzureServices", "ipRules": [{"value": "203.0.113.0/24"}]}
    rules = mocks.one("machinelearningservices:Workspace").inputs["managedNetwork"]["outboundRules"]
    targets = {(r["destination"]["serviceResourceId"], r["destination"]["subresourceTarget"]) for r in rules.values()}
    sa_id, kv_id = mocks.one(":StorageAccount").id, mocks.one(":Vault").id
    assert targets == {(sa_id, "blob"), (sa_id, "file"), (kv_id, "vault")}


def test_endpoint_without_model_creates_no_deployment():
    mocks, _ = _azure(AzureStackSettings(name="cft", endpoint=EndpointSettings(enabled=True)))
    assert len(mocks.of_type(":OnlineEndpoint")) == 1 and mocks.of_type(":OnlineDeployment") == []


def test_settings_from_pulumi_config():
    class Cfg:
        values = {"mlRegistry": "shared-models", "cluster": {"lowPriority": True, "idleSeconds": 300, "maxNodes": "3"},
                  "endpoint": {"enabled": True, "environmentVariables": {"N": 2}}}

        def get(self, key):  # what pulumi.Config.get returns: the raw string (JSON for non-strings)
            value = self.values.get(key)
            return value if value is None or isinstance(value, str) else json.dumps(value)

    s = AzureStackSettings.from_config(Cfg(), stack="dev", location="northeurope")
    assert (s.name, s.location, s.cluster.max_nodes, s.cluster.low_priority) == ("cloudft-dev", "northeurope", 3, True)
    assert s.endpoint.enabled and s.endpoint.environment_variables == {"N": "2"}
    assert s.ml_registry == "shared-models" and s.network == "quickstart" and s.shared_key_access is False
    with pytest.raises(ValueError, match="managedNetwork"):
        AzureStackSettings(managed_network="Open")
    with pytest.raises(ValueError, match="cloudft:network"):
        AzureStackSettings(network="public")
    with pytest.raises(ValueError, match="idleSeconds"):
        AzureStackSettings(cluster=ClusterSettings(idle_seconds=5))
