"""cloudft's entry script inside a SageMaker training container (the `code` channel's entry_script).

0. Installs the code channel's `wheelhouse/` (the exact wheels the image lacks, which cloudft staged at submit)
   with `pip install --no-index --no-deps` into SM_ROOT/cloudft-packages, first on sys.path: nothing is
   downloaded. Then checks that what is installed meets train_entry/requirements.txt and the wheels' own
   requirements (`unmet`, the same function cloudft's preflight uses on the image's package list) and stops with
   the list, in /opt/ml/output/failure, when it does not.
1. Resolves secrets: `CLOUDFT_SECRET_REFS` holds `{"ENV_NAME": "<Secrets Manager ARN or name>[:json_key]"}`
   (references only, never values); each value is fetched with the job's role and put into the
   environment of this process. A key/value secret (the console's default: a JSON object) gives the
   value of `json_key`, or of its only key when no key is named. Values never reach hyperparameters,
   logs or files.
2. Runs `python -m train_entry --config run.json [args...]` in this same process (so torchrun's
   RANK/LOCAL_RANK/WORLD_SIZE stay as the launcher set them). Extra command-line args pass through.

Stdlib, boto3 and packaging only (both ship in the AWS/Hugging Face training images; packaging falls back to the
copy pip vendors).
"""

from __future__ import annotations

import json
import os
import re
import runpy
import sys
from pathlib import Path
from typing import Iterable, Mapping, Optional

HERE = Path(__file__).resolve().parent
REFS_ENV = "CLOUDFT_SECRET_REFS"
WHEELHOUSE = "wheelhouse"  # the code channel's folder of wheels
REQUIREMENTS = ("train_entry", "requirements.txt")  # train_entry's requirements, relative to the code channel
PACKAGES = "cloudft-packages"  # under SM_ROOT: where the wheelhouse is installed


def sm_root() -> Path:
    """/opt/ml (CLOUDFT_SM_ROOT in tests, as train_entry.layout reads it)."""
    return Path(os.environ.get("CLOUDFT_SM_ROOT", "/opt/ml"))


def fail(message: str) -> None:
    """Stop the job with `message` as its FailureReason (SageMaker reads /opt/ml/output/failure)."""
    out = sm_root() / "output"
    if out.is_dir():
        (out / "failure").write_text(message[:1000])
    print(f"cloudft: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


# -- requirements -----------------------------------------------------------------------------------------------

def packaging_api():
    """packaging's (Requirement, SpecifierSet, Version)."""
    try:
        from packaging.requirements import Requirement
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version
    except ImportError:  # pip vendors packaging: every image that can pip-install has it
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
        from pip._vendor.packaging.specifiers import SpecifierSet  # type: ignore[no-redef]
        from pip._vendor.packaging.version import Version  # type: ignore[no-redef]
    return Requirement, SpecifierSet, Version


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines(text: str) -> list[str]:
    """The requirements of a requirements file (comments, blank lines and pip options dropped)."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("-")]


def _bounds(known: str, SpecifierSet, Version):
    """(exact, lower, upper) of what is known of an installed version: exact Version or None; lower/upper as
    (Version, inclusive) or None. None overall when `known` says something a range cannot hold (~=, !=, ===)."""
    exact = lower = upper = None
    for clause in SpecifierSet(known):
        op, v = clause.operator, clause.version
        if op == "==" and "*" not in v:
            exact = Version(v)
        elif op in (">=", ">"):
            lower = (Version(v), op == ">=")
        elif op in ("<=", "<"):
            upper = (Version(v), op == "<=")
        else:
            return None
    return exact, lower, upper


def _surely(specifier, known: str, SpecifierSet, Version) -> bool:
    """Does every version `known` allows satisfy `specifier`?"""
    if not str(specifier):
        return True
    bounds = _bounds(known, SpecifierSet, Version)
    if bounds is None:
        return False
    exact, lower, upper = bounds
    if exact is not None:
        return specifier.contains(exact, prereleases=True)
    for clause in specifier:
        op, v = clause.operator, clause.version
        if "*" in v:
            return False
        r = Version(v)
        above = lower is not None and (lower[0] > r or (lower[0] == r and (op == ">=" or not lower[1])))
        below = upper is not None and (upper[0] < r or (upper[0] == r and (op == "<=" or not upper[1])))
        if op in (">=", ">") and not above:
            return False
        if op in ("<=", "<") and not below:
            return False
        if op == "!=" and not (above or below):
            return False
        if op not in (">=", ">", "<=", "<", "!="):
            return False
    return True


def unmet(requirements: Iterable["tuple[str, str]"], have: Mapping[str, str],
          environment: Optional[Mapping[str, str]] = None) -> "list[tuple[str, str]]":
    """The requirements that `have` does not surely meet, as (requirement, why) pairs ("WHO needs it; has WHAT").

    `requirements`: (requirement, who needs it) pairs; one whose environment marker is false in `environment`
    (marker variables overriding this interpreter's; `extra` is "" as when pip installs without extras) is not
    needed. `have`: canonical name → what is known of the installed version: "==1.2.3", a range of >=, >, <=, <
    clauses ("at least 2.3.3, below 3"), or "" (installed, version unknown). This is the one comparison of
    "what is needed" with "what is there": cloudft's preflight runs it on an image's recorded packages plus the
    wheelhouse, this launcher on what the container has installed.
    """
    Requirement, SpecifierSet, Version = packaging_api()
    env = {"extra": "", **(environment or {})}
    out = []
    for text, who in requirements:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonical(req.name)
        if name not in have:
            out.append((str(req), f"{who} needs it; not installed"))
        elif not _surely(req.specifier, have[name], SpecifierSet, Version):
            out.append((str(req), f"{who} needs it; has {have[name] or 'a version not known'}"))
    return out


def installed() -> dict[str, str]:
    """What this interpreter imports: canonical name → "==version" (the first on sys.path wins, as for import)."""
    from importlib.metadata import distributions

    out: dict[str, str] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name:
            out.setdefault(canonical(name), f"=={dist.version}")
    return out


# -- wheelhouse -------------------------------------------------------------------------------------------------

def wheel_name(path: Path) -> str:
    """The distribution a wheel file holds (its file name's first field, PEP 427)."""
    return canonical(path.name.split("-", 1)[0])


def install_wheelhouse(code: Path = HERE) -> list[Path]:
    """pip-install the code channel's wheels without an index or dependencies into SM_ROOT/cloudft-packages and put
    that first on sys.path (and PYTHONPATH, for subprocesses). torchrun starts this launcher once per process: the
    first installs under a file lock, the others find it done. Returns the wheels."""
    wheels = sorted((code / WHEELHOUSE).glob("*.whl"))
    if not wheels:
        return []
    import fcntl
    import subprocess

    target = sm_root() / PACKAGES
    target.mkdir(parents=True, exist_ok=True)
    stamp = "\n".join(w.name for w in wheels)
    with open(target / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = target / ".installed"
        if not done.is_file() or done.read_text() != stamp:
            proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-cache-dir",
                                   "--disable-pip-version-check", "--upgrade", "--target", str(target),
                                   *map(str, wheels)], capture_output=True, text=True)
            if proc.returncode != 0:
                fail(f"installing the code channel's wheels failed: {(proc.stderr or proc.stdout).strip()[-600:]}")
            done.write_text(stamp)
    sys.path.insert(0, str(target))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(target), *filter(None, [os.environ.get("PYTHONPATH")])])
    import importlib

    importlib.invalidate_caches()
    return wheels


def check_requirements(code: Path = HERE, wheels: Iterable[Path] = ()) -> "list[tuple[str, str]]":
    """What the container lacks: train_entry/requirements.txt and the installed wheels' own requirements against
    the installed distributions."""
    from importlib.metadata import PackageNotFoundError, distribution

    path = code.joinpath(*REQUIREMENTS)
    reqs = [(r, "train_entry") for r in requirement_lines(path.read_text())] if path.is_file() else []
    for wheel in wheels:
        try:
            dist = distribution(wheel_name(wheel))
        except PackageNotFoundError:
            reqs.append((wheel_name(wheel), "the code channel's wheelhouse"))
            continue
        reqs += [(r, f"{dist.metadata['Name']} {dist.version}") for r in dist.requires or []]
    return unmet(reqs, installed())


def parse_ref(ref: str) -> "tuple[str, str | None]":
    """(SecretId, json_key or None) of a reference: `arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf`
    or `secretsmanager:NAME`, either optionally followed by `:json_key` (Secrets Manager names and ARNs have no
    other colon: the secret ARN has exactly 7 fields). Raises ValueError for anything else."""
    if ref.startswith("arn:"):
        parts = ref.split(":")
        if len(parts) not in (7, 8) or parts[2] != "secretsmanager" or parts[5] != "secret" or not parts[6]:
            raise ValueError("expected arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME[:json_key]")
        return ":".join(parts[:7]), (parts[7] or None) if len(parts) == 8 else None
    if ref.startswith("secretsmanager:"):
        name, _, key = ref[len("secretsmanager:"):].partition(":")
        if not name or ":" in key:
            raise ValueError("expected secretsmanager:NAME[:json_key]")
        return name, key or None
    raise ValueError("not a Secrets Manager reference (arn:aws:secretsmanager:... or secretsmanager:NAME)")


def secret_id(ref: str) -> str:
    """The SecretId part of a reference (see parse_ref)."""
    return parse_ref(ref)[0]


def secret_value(env_name: str, secret: str, json_key: "str | None") -> str:
    """The value to export: the string itself, or one key of a key/value (JSON object) secret. Errors name the
    keys, never the values."""
    if json_key is None:
        if not secret.lstrip().startswith("{"):
            return secret
        try:
            data = json.loads(secret)
        except ValueError:
            return secret  # a plain string that starts with "{"
        if isinstance(data, dict) and len(data) == 1:
            value = next(iter(data.values()))
            return value if isinstance(value, str) else json.dumps(value)
        if isinstance(data, dict):
            raise ValueError(f"{env_name}: the secret is a key/value secret with keys {sorted(data)}; name one "
                             f"in the reference (NAME:json_key)")
        return secret
    try:
        data = json.loads(secret)
    except ValueError:
        raise ValueError(f"{env_name}: the reference names key '{json_key}' but the secret is not JSON") from None
    if not isinstance(data, dict) or json_key not in data:
        keys = sorted(data) if isinstance(data, dict) else []
        raise ValueError(f"{env_name}: the secret has no key '{json_key}' (keys: {keys})")
    value = data[json_key]
    return value if isinstance(value, str) else json.dumps(value)


def resolve_secrets(environ=os.environ) -> list[str]:
    """Fetch every referenced secret into `environ`; returns the names set (values are never printed)."""
    refs = json.loads(environ.pop(REFS_ENV, "") or "{}")
    names = [n for n in refs if not environ.get(n)]
    if not names:
        return []
    import boto3

    client = boto3.client("secretsmanager")
    for name in names:
        sid, key = parse_ref(refs[name])
        value = client.get_secret_value(SecretId=sid)
        raw = value.get("SecretString") or value["SecretBinary"].decode()
        environ[name] = secret_value(name, raw, key)
    return names


def main(argv: list[str]) -> None:
    wheels = install_wheelhouse()
    if wheels:
        print(f"cloudft: installed {', '.join(w.name for w in wheels)} from the code channel (no index)", flush=True)
    missing = check_requirements(HERE, wheels)
    if missing:
        lacks = "; ".join(f"{req} ({why})" for req, why in missing)
        fail(f"this image does not meet train_entry's requirements: {lacks}. Use an image built from "
             "train_entry/Dockerfile (aws.image_uri), or one with these installed")
    names = resolve_secrets()
    if names:
        print(f"cloudft: resolved secret(s) {', '.join(names)} from Secrets Manager", flush=True)
    if "--config" not in argv:
        argv = ["--config", str(HERE / "run.json"), *argv]
    sys.path.insert(0, str(HERE))
    sys.argv = ["train_entry", *argv]
    runpy.run_module("train_entry", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
