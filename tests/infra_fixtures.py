"""Pulumi mocks for the infra tests: record every resource, answer invokes, resolve a program's outputs."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pulumi

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `infra.components` lives at the repository root

ACCOUNT = "123456789012"
REGION = "us-east-1"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
TENANT = "00000000-0000-0000-0000-0000000000aa"

# Azure: the property that holds a resource's name, by type token.
# The input that names each Azure resource (absent: auto-named from the logical name).
_AZURE_NAME_KEYS = {"ResourceGroup": "resourceGroupName", "StorageAccount": "accountName", "Vault": "vaultName",
                    "Registry": "registryName", "Workspace": "workspaceName", "Compute": "computeName",
                    "OnlineEndpoint": "endpointName", "OnlineDeployment": "deploymentName",
                    "Component": "resourceName", "UserAssignedIdentity": "resourceName"}


def guid(kind: str, name: str) -> str:
    """A stable GUID for a mocked identity's client or principal id."""
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}/{name}"))


@dataclass
class Recorded:
    typ: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    id: str


class RecordingMocks(pulumi.runtime.Mocks):
    """Echo inputs, add the computed outputs cloudft's programs read (arn, name, id, url, identity)."""

    def __init__(self) -> None:
        self.resources: list[Recorded] = []
        self.calls: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = dict(args.inputs)
        out = dict(inputs)
        if args.typ.startswith("aws:"):
            rid = out.get("name") or args.name
            service = args.typ.split(":")[1].split("/")[0]
            out.setdefault("name", rid)
            out.setdefault("arn", f"arn:aws:{service}:{REGION}:{ACCOUNT}:{args.typ.split(':')[-1].lower()}/{rid}")
            real = {  # the ARN formats AWS uses (IAM: no region), so linters judge real-looking documents
                "aws:iam/role:Role": f"arn:aws:iam::{ACCOUNT}:role/{rid}",
                "aws:lambda/function:Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{rid}",
                "aws:cloudwatch/logGroup:LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{rid}",
            }
            if args.typ in real:
                out["arn"] = real[args.typ]
            if args.typ == "aws:s3/bucket:Bucket":
                rid = out["bucket"] = f"{inputs.get('bucketPrefix', '')}0001"
                out["arn"] = f"arn:aws:s3:::{rid}"
            elif args.typ == "aws:ecr/repository:Repository":
                out["repositoryUrl"] = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{rid}"
            elif args.typ == "aws:kms/key:Key":
                rid = "key-0001"
                out["keyId"] = rid
                out["arn"] = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{rid}"
            elif args.typ == "aws:cognito/userPool:UserPool":
                rid = f"{REGION}_pool0001"
            elif args.typ == "aws:cognito/userPoolDomain:UserPoolDomain":
                out["userPoolId"] = inputs.get("userPoolId")
        elif args.typ.startswith("azure-native:"):
            name = inputs.get(_AZURE_NAME_KEYS.get(args.typ.split(":")[-1], "-")) or args.name
            out["name"] = name
            rid = out["id"] = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/{args.typ}/{name}"
            if args.typ.endswith(":UserAssignedIdentity"):  # the ARM id form cloudft validates
                rid = out["id"] = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/"
                                   f"Microsoft.ManagedIdentity/userAssignedIdentities/{name}")
            if "identity" in inputs:
                ident = {**inputs["identity"], "tenantId": TENANT}
                if "SystemAssigned" in str(ident.get("type")):
                    ident["principalId"] = f"principal-{args.name}"
                if isinstance(ident.get("userAssignedIdentities"), list):  # ARM answers a map of id → ids
                    ident["userAssignedIdentities"] = {
                        uid: {"principalId": guid("principal", uid.rsplit("/", 1)[-1]),
                              "clientId": guid("client", uid.rsplit("/", 1)[-1])}
                        for uid in ident["userAssignedIdentities"]}
                out["identity"] = ident
            if args.typ.endswith(":Registry"):
                out["loginServer"] = f"{name}.azurecr.io"
            if args.typ.endswith(":UserAssignedIdentity"):  # what ARM computes for a new identity (GUIDs)
                out["clientId"] = guid("client", name)
                out["principalId"] = guid("principal", name)
        else:
            rid = args.name
        rec = Recorded(args.typ, args.name, inputs, out, f"{rid}")
        self.resources.append(rec)
        return rec.id, out

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append(args.token)
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/ci", "id": ACCOUNT, "userId": "ci"}
        if args.token == "aws:index/getRegion:getRegion":
            return {"region": REGION, "name": REGION, "id": REGION, "endpoint": "ec2.us-east-1.amazonaws.com"}
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        if args.token == "azure-native:authorization:getClientConfig":
            return {"clientId": "client", "objectId": "object", "subscriptionId": SUBSCRIPTION, "tenantId": TENANT}
        raise NotImplementedError(f"mock has no answer for invoke {args.token}")

    # ----------------------------------------------------------- queries

    def of_type(self, suffix: str) -> list[Recorded]:
        """Resources whose type token ends with `suffix` (e.g. ':Bucket', 'iam/rolePolicy:RolePolicy')."""
        return [r for r in self.resources if r.typ.endswith(suffix)]

    def one(self, suffix: str) -> Recorded:
        found = self.of_type(suffix)
        assert len(found) == 1, f"expected one {suffix}, found {[r.name for r in found]}"
        return found[0]

    def triples(self) -> list[tuple[str, str, dict]]:
        return [(r.typ, r.name, r.inputs) for r in self.resources]


def run_program(build: Callable[[], dict], *, config: Optional[dict[str, str]] = None,
                stack: str = "test") -> tuple[RecordingMocks, dict[str, Any]]:
    """Run `build()` under fresh mocks; return the mocks (recorded resources) and its resolved outputs."""
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="cloudft-test", stack=stack, preview=False)
    pulumi.runtime.set_all_config(dict(config or {}))
    resolved: dict[str, Any] = {}

    @pulumi.runtime.test
    def program():
        return pulumi.Output.from_input(build()).apply(resolved.update)

    program()
    return mocks, resolved
