"""The wheelhouse: the exact wheels a training image lacks (images.py records them per image), fetched once with
`pip download --no-deps --only-binary=:all:` for the image's Python and platform, cached under
$CLOUDFT_HOME/wheelhouse, then staged in each job's `code` channel, where the launcher installs them with
`pip install --no-index --no-deps`: the job downloads nothing when it starts.

pip is the fetcher, so pip's own configuration decides where wheels come from (PyPI, PIP_INDEX_URL, a mirror in
pip.conf, PIP_FIND_LINKS). `build(image, fetch=...)` takes another fetcher the way the price refresh does
(cloudft.planner.prices.refresh). Every wheel fetched is checked against the record (name, version and the
requirements its METADATA declares), so the record the preflight reasons about is the wheel that travels.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from ...errors import CloudftError

if TYPE_CHECKING:
    from .images import TrainingImage, Wheel

#: (pins, destination folder, image) → the wheels in the folder; raises when they cannot be fetched
Fetch = Callable[[Sequence[str], Path, "TrainingImage"], None]
#: Ubuntu 22.04 (the DLCs' OS, glibc 2.35) on x86_64 accepts these wheel platforms; pure wheels fit any
PLATFORMS = tuple(f"manylinux_2_{minor}_x86_64" for minor in range(35, 16, -1)) + ("manylinux2014_x86_64",)


def pip_download(pins: Sequence[str], dest: Path, image: "TrainingImage", extra_args: Sequence[str] = ()) -> None:
    """`pip download` exactly `pins`, as binary wheels for the image's CPython on Linux x86_64, without
    dependencies (the record says what each needs; `images.check_image` checks it is there)."""
    abi = "cp" + image.python.replace(".", "")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--progress-bar", "off", "--python-version", image.python, "--implementation", "cp", "--abi", abi,
           *(f"--platform={p}" for p in PLATFORMS), "--dest", str(dest), *extra_args, *pins]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        raise RuntimeError(" | ".join(lines[-3:]) or f"pip exited with {proc.returncode}")


def cache_dir(image: "TrainingImage", root: Optional[Path] = None) -> Path:
    """$CLOUDFT_HOME/wheelhouse/<python>-<hash of the pins>: one folder per exact set of wheels."""
    from ...paths import home

    key = hashlib.sha256("\n".join([image.python, *PLATFORMS, *sorted(w.pin for w in image.wheelhouse)])
                         .encode()).hexdigest()[:16]
    return (root or home() / "wheelhouse") / f"py{image.python}-{key}"


def _metadata(path: Path) -> dict[str, list[str]]:
    with zipfile.ZipFile(path) as zf:
        name = next((n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None)
        if name is None:
            raise ValueError("no .dist-info/METADATA")
        msg = Parser().parsestr(zf.read(name).decode("utf-8"))
    return {"Name": msg.get_all("Name") or [], "Version": msg.get_all("Version") or [],
            "Requires-Dist": msg.get_all("Requires-Dist") or []}


def _applicable(requires: Sequence[str], image: "TrainingImage") -> set[tuple]:
    """Requirements that apply in the image without extras, comparable whatever their spelling."""
    from .staging import launcher_module

    launcher = launcher_module()
    Requirement = launcher.packaging_api()[0]
    env = {"extra": "", **image.marker_environment()}
    out = set()
    for text in requires:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(env):
            out.add((launcher.canonical(req.name), str(req.specifier), tuple(sorted(req.extras))))
    return out


def problems(folder: Path, image: "TrainingImage") -> list[str]:
    """How the wheels in `folder` differ from the image's wheelhouse record (empty: they are exactly it)."""
    from .staging import launcher_module

    canonical = launcher_module().canonical
    wanted: dict[str, "Wheel"] = {canonical(w.name): w for w in image.wheelhouse}
    found: dict[str, Path] = {}
    out = []
    for path in sorted(folder.glob("*")):
        name = canonical(path.name.split("-", 1)[0])
        if path.suffix != ".whl" or name not in wanted or name in found:
            out.append(f"{path.name}: not one of {', '.join(w.pin for w in image.wheelhouse)}")
            continue
        found[name] = path
        wheel = wanted[name]
        try:
            meta = _metadata(path)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            out.append(f"{path.name}: unreadable wheel ({exc})")
            continue
        if [canonical(n) for n in meta["Name"]] != [name] or meta["Version"] != [wheel.version]:
            out.append(f"{path.name}: its METADATA says {meta['Name']} {meta['Version']}, not {wheel.pin}")
            continue
        declared, recorded = _applicable(meta["Requires-Dist"], image), _applicable(wheel.requires, image)
        if declared != recorded:
            extra = sorted("".join(d[:2]) for d in declared - recorded)
            gone = sorted("".join(d[:2]) for d in recorded - declared)
            out.append(f"{path.name}: requires {extra or 'nothing more'} beyond the record, "
                       f"not {gone or 'nothing less'}")
    out += [f"{w.pin}: missing" for n, w in wanted.items() if n not in found]
    return out


def build(image: "TrainingImage", fetch: Optional[Fetch] = None, root: Optional[Path] = None) -> Optional[Path]:
    """The folder holding exactly the image's wheelhouse (None when it has none): from the cache, else fetched
    (by default `pip_download`) into a fresh folder, checked against the record, then moved into the cache."""
    if not image.wheelhouse:
        return None
    dest = cache_dir(image, root)
    if dest.is_dir() and not problems(dest, image):
        return dest
    pins = [w.pin for w in image.wheelhouse]
    tmp = dest.with_name(f"{dest.name}.part-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        try:
            (fetch or pip_download)(pins, tmp, image)
        except Exception as exc:  # noqa: BLE001 - offline, no index, no such wheel: one readable error
            raise CloudftError(
                f"cannot fetch the wheels that the Hugging Face training image lacks ({', '.join(pins)}) for the "
                f"job's code channel: {exc}",
                hint=f"fetch them once with PyPI (or a mirror set in PIP_INDEX_URL / pip.conf) reachable: they are "
                     f"kept in {dest.parent}; or set aws.image_uri to an image built from train_entry/Dockerfile, "
                     "which needs no wheels") from None
        wrong = problems(tmp, image)
        if wrong:
            raise CloudftError(f"the fetched wheels are not the ones cloudft's image record describes: "
                               f"{'; '.join(wrong)}",
                               hint="update the wheelhouse record in cloudft/providers/aws/images.py from the wheels' "
                                    "METADATA (or fix the index pip downloads from)")
        shutil.rmtree(dest, ignore_errors=True)
        try:
            tmp.rename(dest)
        except OSError:  # another submit filled the cache meanwhile
            if problems(dest, image):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
