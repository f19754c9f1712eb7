"""What each provider can do, as data (like SkyPilot's per-cloud unsupported-features table).

`validate` refuses a spec that asks a provider for something it cannot do, naming the field, the reason and the
fix, instead of the provider silently ignoring it. Light module: no provider code is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from train_entry.config import is_remote

from .errors import CloudftError
from .preflight import Finding

if TYPE_CHECKING:
    from .spec import JobSpec


@dataclass(frozen=True)
class Capabilities:
    """One provider's abilities. `launcher`: who starts several training processes ("torchrun": cloudft's command
    or the SDK's Torchrun driver runs torchrun; "platform": the platform starts one process per GPU itself)."""

    provider: str
    spot: bool
    multi_node: bool
    pipelines: bool
    sharding: bool
    deploy: bool
    artifacts: bool
    launcher: str
    secret_refs: tuple[str, ...]  # reference prefixes the provider resolves at run time
    data_schemes: tuple[str, ...]  # remote data it reads as is ("" means none: local files only)
    why_not: dict[str, str]  # capability → the reason it is missing, for error messages


CAPABILITIES: dict[str, Capabilities] = {
    "local": Capabilities(
        provider="local", spot=False, multi_node=False, pipelines=True, sharding=True, deploy=True, artifacts=True,
        launcher="torchrun", secret_refs=("env:",), data_schemes=(),
        why_not={"spot": "this machine has no spot capacity to save on",
                 "multi_node": "local runs use this one machine (compute.gpus_per_node processes)",
                 "secret_refs": "local runs read secrets from this machine's environment (env:VAR); cloud "
                                "references are resolved by aws/azure",
                 "data_schemes": "local runs read local files"}),
    "aws": Capabilities(
        provider="aws", spot=True, multi_node=True, pipelines=True, sharding=True, deploy=True, artifacts=True,
        launcher="torchrun", data_schemes=("s3://",),
        secret_refs=("arn:aws:secretsmanager:", "arn:aws-cn:secretsmanager:", "arn:aws-us-gov:secretsmanager:",
                     "secretsmanager:"),
        why_not={"secret_refs": "SageMaker jobs resolve Secrets Manager references; an env: value would be written "
                                "into the job request",
                 "data_schemes": "SageMaker channels read s3:// or files cloudft uploads"}),
    "azure": Capabilities(
        provider="azure", spot=True, multi_node=True, pipelines=True, sharding=True, deploy=True, artifacts=True,
        launcher="platform", secret_refs=("keyvault:",),
        data_schemes=("azureml://", "azureml:", "https://", "wasbs://", "abfss://"),
        why_not={"secret_refs": "Azure ML jobs resolve Key Vault secrets (azure.key_vault names the vault)",
                 "data_schemes": "Azure ML reads azureml://, https://, wasbs:// / abfss:// or files cloudft "
                                 "registers as data assets"}),
}


#: how each reference prefix is written, for fixes
_REF_FORM = {"env:": "env:VAR", "keyvault:": "keyvault:SECRET-NAME", "secretsmanager:": "secretsmanager:NAME",
             "arn:aws:secretsmanager:": "arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME"}


def capabilities_of(provider: str) -> Capabilities:
    try:
        return CAPABILITIES[provider]
    except KeyError:
        raise CloudftError(f"unknown provider '{provider}'", hint=f"use one of {', '.join(CAPABILITIES)}") from None


def _other(provider: str, capability: str) -> str:
    names = [p for p, c in CAPABILITIES.items() if p != provider and getattr(c, capability)]
    return " or ".join(f"--provider {p}" for p in names)


def check_capabilities(spec: "JobSpec", provider: str) -> list[Finding]:
    """Every place where `spec` asks `provider` for something it cannot do, as error findings on the spec field."""
    caps = capabilities_of(provider)
    problems: list[Finding] = []

    def refuse(loc: tuple, capability: str, what: str, fix: str) -> None:
        reason = caps.why_not.get(capability, f"the {provider} provider cannot do this")
        problems.append(Finding(f"capability.{capability}", "error", f"{what}: {reason}", fix,
                                f"cloudft/capabilities.py: the {provider} provider's capabilities",
                                ".".join(str(p) for p in loc)))

    if spec.compute.spot and not caps.spot:
        refuse(("compute", "spot"), "spot", f"the {provider} provider has no spot capacity",
               f"remove compute.spot (or set it to false), or submit with {_other(provider, 'spot')}")
    if spec.compute.instance_count > 1 and not caps.multi_node:
        refuse(("compute", "instance_count"), "multi_node", f"the {provider} provider runs on one node",
               f"set compute.instance_count: 1 (use compute.gpus_per_node for several processes), or submit with "
               f"{_other(provider, 'multi_node')}")
    dist = spec.distributed
    if dist.strategy == "fsdp" and not caps.sharding:
        refuse(("distributed", "strategy"), "sharding", f"the {provider} provider cannot shard a model",
               f"set distributed.strategy: ddp or auto, or submit with {_other(provider, 'sharding')}")
    if dist.sharding == "hybrid_shard" and not caps.multi_node:
        refuse(("distributed", "sharding"), "multi_node",
               f"hybrid_shard replicates the model across nodes and the {provider} provider runs on one",
               f"set distributed.sharding: full_shard, or submit with {_other(provider, 'multi_node')}")
    if spec.stages and len(spec.stages) > 1 and not caps.pipelines:
        refuse(("stages",), "pipelines", f"the {provider} provider runs one stage per job",
               "submit each stage as its own spec")
    for name, ref in spec.secrets.items():
        if not ref.startswith(caps.secret_refs):
            refuse(("secrets", name), "secret_refs",
                   f"secret {name} ('{ref.split(':', 1)[0]}:' reference) is not resolved by the {provider} provider",
                   f"use {' or '.join(_REF_FORM.get(p, p + '...') for p in caps.secret_refs)} for {name}")
    for i, stage in enumerate(spec.stage_list()):
        data = stage.data or spec.data
        base = ("stages", i, "data") if stage.data else ("data",)
        for split in ("train", "validation"):
            value = getattr(data, split)
            if value and is_remote(value) and not value.startswith(caps.data_schemes):
                refuse(base + (split,), "data_schemes", f"data.{split} is {value.split(':', 1)[0]}:",
                       "use a local file (cloudft uploads it)"
                       + (f" or {', '.join(caps.data_schemes)}" if caps.data_schemes else ", downloaded first"))
    return problems
