"""Resolve cloudft secrets from Azure Key Vault at run time (inside the Azure ML job or the online deployment).

The job definition carries only names: CLOUDFT_KEY_VAULT=<vault name> and CLOUDFT_SECRETS=ENV=secret-name,...
The values are fetched with the compute's managed identity (azure-identity DefaultAzureCredential; AZURE_CLIENT_ID
names a user-assigned identity) and put into this process's environment, never printed.

A bearer token goes only to `https://<vault name>.vault.azure.net`: the vault and every secret name are checked
against Azure's naming rules *before* a token is requested, redirects are not followed, and the Authorization
header is never forwarded. This module is pure stdlib until a token is needed; `cloudft validate` loads the same
file for the same checks, so there is one definition of what a vault reference may be.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request

API_VERSION = "7.4"
VAULT_SCOPE = "https://vault.azure.net/.default"
VAULT_DOMAIN = "vault.azure.net"  # public cloud only (sovereign clouds use other suffixes; not supported)

# Microsoft.KeyVault/vaults: 3-24 characters, alphanumerics and hyphens; start with a letter, end with a letter or
# digit, no consecutive hyphens. vaults/secrets: 1-127 alphanumerics and hyphens.
# Source: learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules#microsoftkeyvault
# (and key-vault/general/common-error-codes: VaultNameNotValid).
_VAULT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]")
_VAULT_URL = re.compile(r"https://([A-Za-z0-9-]{3,24})\.vault\.azure\.net/?")
_SECRET_NAME = re.compile(r"[A-Za-z0-9-]{1,127}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

VAULT_FORMS = "a vault name (3-24 letters, digits and hyphens, starting with a letter) or https://NAME.vault.azure.net"


def vault_name(value: str) -> str:
    """The vault name in `value`: a bare name or `https://NAME.vault.azure.net[/]`. ValueError for anything else
    (another host, a port, a path, a query, user info, whitespace, non-ASCII)."""
    if not isinstance(value, str):
        raise ValueError(f"key vault must be {VAULT_FORMS}")
    url = _VAULT_URL.fullmatch(value)
    name = url.group(1) if url else value
    if not _VAULT_NAME.fullmatch(name) or "--" in name:
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise ValueError(f"{shown!r} is not a Key Vault reference: use {VAULT_FORMS}")
    return name


def vault_url(value: str) -> str:
    """`https://NAME.vault.azure.net` for a checked vault reference."""
    return f"https://{vault_name(value)}.{VAULT_DOMAIN}"


def secret_name(value: str) -> str:
    """A Key Vault secret name (1-127 letters, digits and hyphens), or ValueError."""
    if not isinstance(value, str) or not _SECRET_NAME.fullmatch(value):
        shown = str(value) if len(str(value)) <= 80 else str(value)[:77] + "..."
        raise ValueError(f"{shown!r} is not a Key Vault secret name: use 1-127 letters, digits and hyphens")
    return value


def parse(spec: str) -> dict[str, str]:
    """'HF_TOKEN=hf-token,WANDB_API_KEY=wandb' → {'HF_TOKEN': 'hf-token', 'WANDB_API_KEY': 'wandb'}.

    Every environment variable and secret name is checked (ValueError otherwise)."""
    out = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        env, sep, name = item.partition("=")
        env, name = env.strip(), name.strip()
        if not sep or not _ENV_NAME.fullmatch(env):
            raise ValueError(f"CLOUDFT_SECRETS entry {item[:40]!r} must be ENV_VAR=secret-name")
        out[env] = secret_name(name)
    return out


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Key Vault answers directly; a redirect would carry the request (and a token) elsewhere: refuse it."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 - urllib hook
        raise urllib.error.HTTPError(req.full_url, code, f"refusing redirect to {newurl!r}", headers, fp)


_OPENER = urllib.request.build_opener(_NoRedirect)


def secret_request(vault: str, name: str, token: str) -> urllib.request.Request:
    """The GET for one secret, only ever to https://<vault>.vault.azure.net (both names checked first)."""
    url = f"{vault_url(vault)}/secrets/{urllib.parse.quote(secret_name(name), safe='')}?api-version={API_VERSION}"
    req = urllib.request.Request(url, method="GET")
    req.add_unredirected_header("Authorization", f"Bearer {token}")
    return req


def fetch(vault: str, name: str, token: str) -> str:
    with _OPENER.open(secret_request(vault, name, token), timeout=30) as resp:  # noqa: S310 (checked https host)
        return json.loads(resp.read())["value"]


def load_secrets(environ: "os._Environ[str] | dict[str, str]" = os.environ) -> list[str]:
    """Fill `environ` with the secrets named in CLOUDFT_SECRETS; returns the env var names set.

    Refuses (SystemExit, before any token is requested) a vault that is not a Key Vault name or URL, and
    malformed secret names."""
    raw_vault = environ.get("CLOUDFT_KEY_VAULT", "")
    try:
        wanted = parse(environ.get("CLOUDFT_SECRETS", ""))
        if not wanted:
            return []
        if not raw_vault:
            raise ValueError("CLOUDFT_SECRETS is set but CLOUDFT_KEY_VAULT is empty")
        vault = vault_name(raw_vault)
    except ValueError as exc:
        raise SystemExit(f"cloudft: refusing to read secrets: {exc}") from None
    from azure.identity import DefaultAzureCredential

    # A user-assigned identity is named by client id: AZURE_CLIENT_ID (cloudft sets it), else the cluster's default
    # identity, which Azure ML exposes as DEFAULT_IDENTITY_CLIENT_ID (how-to-identity-based-service-authentication,
    # "Compute cluster"). Passing None would force the system-assigned identity, so pass nothing then.
    client_id = environ.get("AZURE_CLIENT_ID") or environ.get("DEFAULT_IDENTITY_CLIENT_ID")
    credential = DefaultAzureCredential(**({"managed_identity_client_id": client_id} if client_id else {}))
    token = credential.get_token(VAULT_SCOPE).token
    for env, name in wanted.items():
        environ[env] = fetch(vault, name, token)
    return sorted(wanted)
