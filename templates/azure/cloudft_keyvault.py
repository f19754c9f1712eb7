"""Resolve cloudft secrets from Azure Key Vault at run time (inside the Azure ML job or the online deployment).

The job definition carries only names: CLOUDFT_KEY_VAULT=<vault name> and CLOUDFT_SECRETS=ENV=secret-name,...
The values are fetched with the compute's managed identity (azure-identity DefaultAzureCredential; set
AZURE_CLIENT_ID for a user-assigned identity) and put into this process's environment, never printed.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request

API_VERSION = "7.4"


def parse(spec: str) -> dict[str, str]:
    """'HF_TOKEN=hf-token,WANDB_API_KEY=wandb' → {'HF_TOKEN': 'hf-token', 'WANDB_API_KEY': 'wandb'}."""
    out = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        env, _, name = item.partition("=")
        out[env.strip()] = name.strip()
    return out


def fetch(vault: str, name: str, token: str) -> str:
    url = f"https://{vault}.vault.azure.net/secrets/{urllib.parse.quote(name)}?api-version={API_VERSION}"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (https only)
        return json.loads(resp.read())["value"]


def load_secrets(environ: "os._Environ[str] | dict[str, str]" = os.environ) -> list[str]:
    """Fill `environ` with the secrets named in CLOUDFT_SECRETS; returns the env var names set."""
    wanted = parse(environ.get("CLOUDFT_SECRETS", ""))
    vault = environ.get("CLOUDFT_KEY_VAULT", "")
    if not wanted:
        return []
    if not vault:
        raise SystemExit("cloudft: CLOUDFT_SECRETS is set but CLOUDFT_KEY_VAULT is empty")
    from azure.identity import DefaultAzureCredential

    token = DefaultAzureCredential().get_token("https://vault.azure.net/.default").token
    for env, name in wanted.items():
        environ[env] = fetch(vault, name, token)
    return sorted(wanted)
