"""Key Vault references as an attacker would write them: refused at `cloudft validate` (file:line:col), and again
by the launcher and the scoring script before any token is requested; a token only ever goes to
https://<vault>.vault.azure.net, never through a redirect."""

from __future__ import annotations

import email.message
import importlib.util
import io
import sys
import urllib.error
import urllib.parse
import urllib.request
import urllib.response
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudft.errors import CloudftError, SpecError
from cloudft.providers.azure import AzureProvider
from cloudft.spec import load_spec_text
from helpers import REPO

LORA = REPO / "examples" / "azure-lora.yaml"
TEMPLATES = REPO / "templates" / "azure"

HOSTILE_VAULTS = [
    "attacker.example/collect?x=",             # the reported case: host + path + query
    "https://attacker.example",                # another host
    "https://cloudft-kv.vault.azure.net.attacker.example",  # suffix trick
    "https://cloudft-kv.vault.azure.net@attacker.example",  # user info
    "https://attacker.example#.vault.azure.net",
    "https://cloudft-kv.vault.azure.net:8443",  # port
    "https://cloudft-kv.vault.azure.net/secrets/x",  # path
    "http://cloudft-kv.vault.azure.net",        # plain http
    "cloudft-kv.vault.azure.net",               # host without scheme
    "cloudft-kv\n",                             # trailing newline
    "cloudft kv", "kv", "a" * 25, "1cloudft", "cloudft-", "cloud--ft", "clöudft", "cloudft_kv", "",
    "169.254.169.254",
]
GOOD_VAULTS = {"cloudft-kv": "cloudft-kv", "https://cloudft-kv.vault.azure.net": "cloudft-kv",
               "https://Team42-Vault.vault.azure.net/": "Team42-Vault", "abc": "abc", "a" * 24: "a" * 24}


def _load(name: str):
    """A module of the code folder deploy stages (templates/azure plus cloudft_textgen beside score.py)."""
    from cloudft.providers.azure.deploy import serve_code

    code = serve_code()
    if str(code) not in sys.path:
        sys.path.insert(0, str(code))
    spec = importlib.util.spec_from_file_location(f"test_{name}", code / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def kv(monkeypatch):
    """The launcher module as the job imports it (from its code folder)."""
    monkeypatch.syspath_prepend(str(TEMPLATES))
    monkeypatch.delitem(sys.modules, "cloudft_keyvault", raising=False)
    import cloudft_keyvault

    return cloudft_keyvault


class TokenSpy:
    """Stands in for azure.identity.DefaultAzureCredential and records every token request."""

    calls: list = []

    def __init__(self, **kwargs):
        TokenSpy.calls.append(("init", kwargs))

    def get_token(self, *scopes, **kwargs):
        TokenSpy.calls.append(("token", scopes))
        import types

        return types.SimpleNamespace(token="tok-123")


@pytest.fixture
def spy(monkeypatch):
    import azure.identity

    TokenSpy.calls = []
    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", TokenSpy)
    return TokenSpy


def _spec_text(vault: str) -> str:
    import json

    return LORA.read_text().replace("  key_vault: cloudft-kv", f"  key_vault: {json.dumps(vault)}")


# -- validate -------------------------------------------------------------------------------------

@pytest.mark.parametrize("vault", HOSTILE_VAULTS)
def test_validate_refuses_hostile_vault_with_location(vault):
    with pytest.raises(SpecError) as err:
        AzureProvider().validate(load_spec_text(_spec_text(vault), str(LORA)))
    (problem,) = err.value.problems
    assert problem.field == "azure.key_vault"
    assert (problem.file, problem.line, problem.column) == (str(LORA), 29, 14)
    assert "not a Key Vault reference" in problem.message and "https://NAME.vault.azure.net" in problem.message


@pytest.mark.parametrize("vault, name", sorted(GOOD_VAULTS.items()))
def test_validate_accepts_a_name_or_the_vault_url_and_keeps_the_name(vault, name, tmp_path):
    prov = AzureProvider()
    spec = load_spec_text(_spec_text(vault), str(LORA))
    prov.validate(spec)
    assert prov.section(spec).key_vault == name


def test_cli_validate_prints_file_line_col_and_reason(tmp_path):
    import subprocess

    path = tmp_path / "spec.yaml"
    path.write_text(_spec_text("attacker.example/collect?x="))
    proc = subprocess.run([sys.executable, "-m", "cloudft.cli.main", "validate", str(path), "--provider", "azure"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{path}:29:14: azure.key_vault: 'attacker.example/collect?x=' is not a Key Vault reference" in proc.stderr


@pytest.mark.parametrize("ref", ["keyvault:../keys/x", "keyvault:hf token", "keyvault:a/b", "keyvault:x?y=1",
                                 "keyvault:" + "a" * 128, "keyvault:"])
def test_validate_refuses_secret_names_key_vault_would_not_hold(ref):
    import json

    text = LORA.read_text().replace("keyvault:hf-token", json.dumps(ref))
    with pytest.raises(SpecError) as err:
        AzureProvider().validate(load_spec_text(text, str(LORA)))
    (problem,) = err.value.problems
    assert (problem.field, problem.line) == ("secrets.HF_TOKEN", 23)  # refused when the spec loads
    assert "is not a Key Vault secret name" in problem.message


def test_a_stack_output_with_a_hostile_vault_is_refused_by_name(tmp_path):
    outputs = tmp_path / "outputs.json"
    outputs.write_text('{"key_vault": "attacker.example/x?"}')
    text = LORA.read_text().replace("  key_vault: cloudft-kv\n", "")
    prov = AzureProvider()
    prov.stack = str(outputs)
    with pytest.raises(CloudftError, match="stack output key_vault .* is invalid"):
        prov.validate(load_spec_text(text, str(LORA)))


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=60), st.builds(lambda a, b: f"https://{a}.vault.azure.net{b}",
                                                  st.text(max_size=30), st.text(max_size=10))))
def test_fuzz_any_accepted_vault_means_exactly_one_vault_host(value):
    kv = _load("cloudft_keyvault")
    try:
        url = kv.vault_url(value)
    except ValueError:
        return  # refused, cleanly
    parts = urllib.parse.urlsplit(url + "/secrets/x")
    assert parts.scheme == "https" and parts.port is None and not parts.username and not parts.query
    assert parts.hostname.endswith(".vault.azure.net") and parts.hostname.count(".") == 3
    assert 3 <= len(parts.hostname.split(".")[0]) <= 24


# -- the launcher (in the job) and the scoring script (in the endpoint) ---------------------------------

@pytest.mark.parametrize("vault", HOSTILE_VAULTS[:8] + ["", "kv"])
def test_launcher_refuses_a_non_vault_host_before_any_token(kv, spy, vault, monkeypatch):
    sent = []
    monkeypatch.setattr(kv._OPENER, "open", lambda *a, **k: sent.append(a))
    env = {"CLOUDFT_SECRETS": "HF_TOKEN=hf-token", "CLOUDFT_KEY_VAULT": vault}
    with pytest.raises(SystemExit, match="refusing to read secrets"):
        kv.load_secrets(env)
    assert spy.calls == [] and sent == [] and "HF_TOKEN" not in env


@pytest.mark.parametrize("secrets", ["HF_TOKEN=../keys/signing", "HF_TOKEN=a/b", "HF TOKEN=x", "=x", "HF_TOKEN"])
def test_launcher_refuses_malformed_secret_names_before_any_token(kv, spy, secrets):
    with pytest.raises(SystemExit, match="refusing to read secrets"):
        kv.load_secrets({"CLOUDFT_SECRETS": secrets, "CLOUDFT_KEY_VAULT": "cloudft-kv"})
    assert spy.calls == []


def test_launcher_sends_the_token_only_to_the_vault_with_the_identity_client_id(kv, spy, monkeypatch):
    sent = []

    def fake_open(req, timeout=None):
        sent.append(req)
        return io.BytesIO(b'{"value": "hf_secret"}')

    monkeypatch.setattr(kv._OPENER, "open", fake_open)
    env = {"CLOUDFT_SECRETS": "HF_TOKEN=hf-token", "CLOUDFT_KEY_VAULT": "cloudft-kv",
           "DEFAULT_IDENTITY_CLIENT_ID": "11111111-2222-3333-4444-555555555555"}
    assert kv.load_secrets(env) == ["HF_TOKEN"] and env["HF_TOKEN"] == "hf_secret"
    assert spy.calls[0] == ("init", {"managed_identity_client_id": "11111111-2222-3333-4444-555555555555"})
    assert spy.calls[1] == ("token", ("https://vault.azure.net/.default",))
    (req,) = sent
    assert req.full_url == "https://cloudft-kv.vault.azure.net/secrets/hf-token?api-version=7.4"
    # the token is an unredirected header: urllib never copies it onto a redirected request
    assert "Authorization" not in req.headers and req.unredirected_hdrs["Authorization"] == "Bearer tok-123"


def test_launcher_does_not_follow_a_redirect(kv):
    seen = []

    class RedirectingHttps(urllib.request.HTTPSHandler):  # replaces the real one: no network
        def https_open(self, req):
            seen.append((req.full_url, req.get_header("Authorization")))
            headers = email.message.Message()
            headers["Location"] = "https://attacker.example/collect"
            resp = urllib.response.addinfourl(io.BytesIO(b""), headers, req.full_url, 302)
            resp.msg = "Found"
            return resp

    opener = urllib.request.build_opener(kv._NoRedirect, RedirectingHttps)
    with pytest.raises(urllib.error.HTTPError, match="refusing redirect"):
        opener.open(kv.secret_request("cloudft-kv", "hf-token", "tok"))
    assert seen == [("https://cloudft-kv.vault.azure.net/secrets/hf-token?api-version=7.4", "Bearer tok")]


def test_scoring_script_refuses_a_non_vault_host_before_any_token(kv, spy, monkeypatch):
    monkeypatch.setenv("CLOUDFT_SECRETS", "HF_TOKEN=hf-token")
    monkeypatch.setenv("CLOUDFT_KEY_VAULT", "attacker.example/collect?x=")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(Path(__file__).parent))
    score = _load("score")
    with pytest.raises(SystemExit, match="refusing to read secrets"):
        score.init()
    assert spy.calls == [] and score.tm is None  # no token requested, no model loaded


_FIELD_VALUES = st.one_of(st.text(max_size=80), st.integers(), st.none(), st.booleans(),
                          st.lists(st.text(max_size=10), max_size=3), st.dictionaries(st.text(max_size=5),
                                                                                     st.text(max_size=5), max_size=2))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["key_vault", "identity_client_id", "endpoint_identity_id",
                                        "endpoint_identity_client_id", "compute", "identity", "environment",
                                        "job_tier", "location"]), _FIELD_VALUES, max_size=4))
def test_fuzz_azure_section_fails_only_with_located_errors(values):
    """Hostile `azure:` values: validate refuses them with a located SpecError (or accepts valid ones); never a
    traceback of another kind, and an accepted key_vault is always a vault name."""
    import yaml

    data = yaml.safe_load(LORA.read_text())
    data["azure"].update(values)
    try:
        text = yaml.safe_dump(data)
    except yaml.YAMLError:
        return
    prov = AzureProvider()
    try:
        spec = load_spec_text(text, str(LORA))
        prov.validate(spec)
    except (SpecError, CloudftError) as exc:
        assert str(exc)
        return
    vault = prov.section(spec).key_vault
    assert vault is None or _load("cloudft_keyvault").vault_name(vault) == vault


def test_launcher_process_stops_before_running_the_job_on_a_hostile_vault(tmp_path):
    """`python cloudft_launch.py <command>` as Azure ML runs it: refused before the command starts or a token is
    requested (no azure-identity import needed to refuse)."""
    import os
    import subprocess

    env = {**os.environ, "CLOUDFT_SECRETS": "HF_TOKEN=hf-token", "CLOUDFT_KEY_VAULT": "attacker.example/collect?x=",
           "PYTHONPATH": "", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "cloudft_launch.py", sys.executable, "-c", "print('JOB RAN')"],
                          cwd=TEMPLATES, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "JOB RAN" not in proc.stdout
    assert "refusing to read secrets: 'attacker.example/collect?x=' is not a Key Vault reference" in proc.stderr
