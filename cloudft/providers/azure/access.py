"""Who acts on Azure and what each needs, as data: the identity every actor uses and its role assignments.

Written once and read by three places: the Pulumi program grants exactly these (infra/components/azure_ml.py,
checked under mocks), `cloudft plan/submit` checks them against a stack's outputs (preflight), and docs/azure.md
prints them for teams that bring their own workspace (`cloudft.providers.azure.access.markdown()`).
Light module: no Azure SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

#: What a role is granted on: the workspace's resources (a stack creates all of them).
Scope = Literal["workspace", "storage", "key_vault", "registry", "endpoint_identity"]
SCOPES: dict[str, str] = {
    "workspace": "the Azure ML workspace", "storage": "the workspace's storage account",
    "key_vault": "the Key Vault named by azure.key_vault", "registry": "the workspace's container registry",
    "endpoint_identity": "the endpoint's user-assigned identity",
}

DOC = "https://learn.microsoft.com/azure/machine-learning"
SRC_SERVERLESS = f"{DOC}/how-to-use-serverless-compute (Identity support: no system-assigned identity)"
SRC_CLUSTER = (f"{DOC}/how-to-identity-based-service-authentication (Compute cluster: one system-assigned or "
               "several user-assigned identities; the default identity mounts storage and pulls images)")
SRC_SECRETS = (f"{DOC}/how-to-use-secrets-in-runs (grant the cluster's, or a serverless job's, managed identity "
               "Key Vault Secrets User on an RBAC vault)")
SRC_SHARED_KEY = (f"{DOC}/how-to-disable-local-auth-storage (identity-based system datastores; users need "
                  "Storage Blob Data Contributor; jobs read and write storage as their managed identity)")
SRC_ENDPOINT = (f"{DOC}/how-to-access-resources-from-endpoints-managed-identities (online endpoints need AcrPull "
                "on the registry and Storage Blob Data Reader on the default datastore)")
SRC_WORKSPACE_ROLES = f"{DOC}/how-to-assign-roles (AzureML Data Scientist: all workspace actions but compute)"
SRC_ASSIGN_IDENTITY = (f"{DOC}/how-to-identity-based-service-authentication (Prerequisites: Managed Identity "
                       "Operator to assign a user-assigned identity)")
SRC_KV_RBAC = "https://learn.microsoft.com/azure/key-vault/general/rbac-guide (Key Vault Secrets Officer)"


@dataclass(frozen=True)
class Role:
    """A built-in Azure role: its name and definition id (the same in every tenant)."""

    name: str
    id: str


#: Definition ids from https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
ROLES: dict[str, Role] = {r.name: r for r in (
    Role("AcrPull", "7f951dda-4ed3-4680-a7ca-43fe172d538d"),
    Role("Storage Blob Data Contributor", "ba92f5b4-2d11-453d-a403-e96b0029c9fe"),
    Role("Storage Blob Data Reader", "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"),
    Role("Key Vault Secrets User", "4633458b-17de-408a-b874-0445c86b69e6"),
    Role("Key Vault Secrets Officer", "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"),
    Role("AzureML Data Scientist", "f6c7c914-8db3-469d-8ca1-694a8f32e121"),
    Role("Managed Identity Operator", "f1a07417-d97a-45cb-824c-7a7467783830"),
)}


@dataclass(frozen=True)
class Grant:
    """One role assignment an actor needs: the role, where, why, and the documentation that says so."""

    role: str
    scope: Scope
    why: str
    source: str

    @property
    def role_id(self) -> str:
        return ROLES[self.role].id


@dataclass(frozen=True)
class Actor:
    """Someone or something that calls Azure for cloudft, the identity it acts as and what that identity needs."""

    name: str
    identity: str  # which identity, in words
    used_by: str  # what runs as it
    output: Optional[str]  # the stack output naming it (None: the person or pipeline running cloudft)
    grants: tuple[Grant, ...]


TRAINING = Actor(
    "training", "user-assigned identity `<stack>-train` attached to the workspace (not system-assigned)",
    "serverless jobs (`identity: managed` with its client id) and the GPU cluster (its only identity)",
    "identity_client_id", (
        Grant("Storage Blob Data Contributor", "storage",
              "mount data assets, write outputs and checkpoints (identity-based datastores, shared key off)",
              SRC_SHARED_KEY),
        Grant("AcrPull", "registry", "pull the training environment's image from the workspace registry",
              SRC_CLUSTER),
        Grant("Key Vault Secrets User", "key_vault", "the launcher reads the spec's `secrets:`", SRC_SECRETS),
    ))
ENDPOINT = Actor(
    "endpoint", "user-assigned identity `<stack>-serve` (fixed at endpoint creation; immutable afterwards)",
    "managed online endpoints `cloudft deploy` creates (score.py reads HF_TOKEN as it)",
    "endpoint_identity_client_id", (
        Grant("AcrPull", "registry", "pull the serving environment's image", SRC_ENDPOINT),
        Grant("Storage Blob Data Reader", "storage", "read the registered adapter from the default datastore",
              SRC_ENDPOINT),
        Grant("Key Vault Secrets User", "key_vault", "score.py reads the spec's `secrets:` (e.g. HF_TOKEN)",
              SRC_SECRETS),
    ))
CLI_USER = Actor(
    "cli_user", "you (az login / DefaultAzureCredential) or the pipeline that runs cloudft",
    "`cloudft submit/status/logs/artifacts/deploy`",
    None, (
        Grant("AzureML Data Scientist", "workspace",
              "submit jobs, register data, environments and models, create endpoints", SRC_WORKSPACE_ROLES),
        Grant("Storage Blob Data Contributor", "storage",
              "upload code snapshots and data assets, download artifacts (shared key off)", SRC_SHARED_KEY),
        Grant("Managed Identity Operator", "endpoint_identity", "create endpoints that run as the endpoint identity",
              SRC_ASSIGN_IDENTITY),
        Grant("Key Vault Secrets Officer", "key_vault", "store the secrets the spec names (az keyvault secret set)",
              SRC_KV_RBAC),
    ))
ACTORS: tuple[Actor, ...] = (TRAINING, ENDPOINT, CLI_USER)


def actor(name: str) -> Actor:
    """The actor called `name` (one of ACTORS)."""
    return next(a for a in ACTORS if a.name == name)


def assignments() -> list[tuple[str, str, str]]:
    """Every (actor, role, scope) the model asks for: what a cloudft stack grants, no more and no less."""
    return [(a.name, g.role, g.scope) for a in ACTORS for g in a.grants]


def needed(actor_name: str, *, secrets: bool) -> list[Grant]:
    """The grants an actor needs for one plan: Key Vault access only when the spec has secrets."""
    return [g for g in actor(actor_name).grants if secrets or g.scope != "key_vault"]


def missing(actor_name: str, granted: list[dict], *, secrets: bool) -> list[Grant]:
    """The needed grants absent from a stack's `role_assignments` output ([{actor, role, scope}, ...])."""
    have = {(g.get("actor"), g.get("role"), g.get("scope")) for g in granted if isinstance(g, dict)}
    return [g for g in needed(actor_name, secrets=secrets) if (actor_name, g.role, g.scope) not in have]


def markdown() -> str:
    """The identities and role assignments as a Markdown table (docs/azure.md embeds this text)."""
    lines = ["| actor | identity | used by | role | on | why |", "|---|---|---|---|---|---|"]
    for a in ACTORS:
        for i, g in enumerate(a.grants):
            head = (f"**{a.name}**", a.identity, a.used_by) if i == 0 else ("", "", "")
            lines.append(f"| {' | '.join(head)} | {g.role} | {SCOPES[g.scope]} | {g.why} |")
    return "\n".join(lines)
