"""The infra/azure program under Pulumi mocks: resources, their properties, and the wired stack outputs."""

from __future__ import annotations

import json

import pytest
from infra_fixtures import SUBSCRIPTION, TENANT, run_program

from cloudft.infra.contract import AZURE_OUTPUT_KEYS
from infra.components.azure_ml import ROLE_ACR_PULL, ROLE_STORAGE_BLOB_DATA_CONTRIBUTOR
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
    assert ws["identity"] == {"type": "SystemAssigned"}
    assert ws["storageAccount"] == mocks.one(":StorageAccount").id
    assert ws["keyVault"] == mocks.one(":Vault").id
    assert ws["containerRegistry"] == mocks.one(":Registry").id
    assert ws["applicationInsights"] == mocks.one("applicationinsights:Component").id
    assert ws["managedNetwork"] == {"isolationMode": "AllowInternetOutbound"}
    insights = mocks.one("applicationinsights:Component").inputs
    assert insights["workspaceResourceId"] == mocks.one("operationalinsights:Workspace").id


def test_storage_vault_registry_settings(base):
    mocks, _ = base
    sa = mocks.one(":StorageAccount").inputs
    assert (sa["allowBlobPublicAccess"], sa["minimumTlsVersion"], sa["enableHttpsTrafficOnly"]) == \
        (False, "TLS1_2", True)
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


def test_cluster_identity_gets_scoped_roles(base):
    mocks, _ = base
    principal = mocks.one(":Compute").outputs["identity"]["principalId"]
    grants = {r.inputs["roleDefinitionId"].rsplit("/", 1)[-1]: r.inputs for r in mocks.of_type(":RoleAssignment")}
    assert len(grants) == 3 and all(g["principalId"] == principal for g in grants.values())
    assert grants[ROLE_ACR_PULL]["scope"] == mocks.one(":Registry").id
    assert grants[ROLE_STORAGE_BLOB_DATA_CONTRIBUTOR]["scope"] == mocks.one(":StorageAccount").id
    assert all(g["roleDefinitionId"].startswith(f"/subscriptions/{SUBSCRIPTION}/") for g in grants.values())


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
    assert ep.inputs["properties"]["authMode"] == "Key" and ep.inputs["identity"] == {"type": "SystemAssigned"}
    assert out["endpoint_name"] == "cft-adapters" == ep.outputs["name"]
    dep = mocks.one(":OnlineDeployment").inputs
    assert dep["endpointName"] == "cft-adapters" and dep["sku"] == {"name": "Default", "capacity": 1}
    props = dep["properties"]
    assert (props["endpointComputeType"], props["model"], props["environmentId"], props["instanceType"]) == \
        ("Managed", "azureml://m/1", "azureml://e/1", "Standard_NC6s_v3")
    assert props["readinessProbe"]["initialDelay"] == "PT600S"


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
    assert s.ml_registry == "shared-models"
    with pytest.raises(ValueError, match="managedNetwork"):
        AzureStackSettings(managed_network="Open")
    with pytest.raises(ValueError, match="idleSeconds"):
        AzureStackSettings(cluster=ClusterSettings(idle_seconds=5))
