"""The default training image starts with nothing to download: the wheelhouse (what the image lacks, as exact
wheels) is fetched once with the real pip from a local folder (tests never reach PyPI), checked against the record,
cached, staged in the code channel, and installed by the launcher with `pip install --no-index --no-deps`."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from importlib.metadata import requires, version
from pathlib import Path

import pytest

from aws_fixtures import EXAMPLES, plan_for
from cloudft.errors import CloudftError
from cloudft.providers.aws import images, wheelhouse
from cloudft.providers.aws.staging import launcher_module
from helpers import REPO, write_wheel
from test_aws_dryrun import no_aws  # noqa: F401

IMAGE = images.HF_TRAINING_IMAGES[images.DEFAULT_TRANSFORMERS]


def _index(folder: Path, **changed_requires) -> Path:
    """A find-links folder with a wheel per recorded pin (METADATA as recorded, or as `changed_requires` says)."""
    for w in IMAGE.wheelhouse:
        write_wheel(folder, w.name, w.version, changed_requires.get(w.name, w.requires))
    return folder


def _local(index: Path):
    """The real pip download, told to use only `index`."""
    return functools.partial(wheelhouse.pip_download, extra_args=("--no-index", "--find-links", str(index)))


def test_the_wheelhouse_carries_the_trl_and_accelerate_train_entry_is_tested_with():
    for w in IMAGE.wheelhouse:
        if w.name in ("trl", "accelerate"):  # installed here: the releases the test suite runs
            assert w.version == version(w.name), w.name
            assert wheelhouse._applicable(requires(w.name) or [], IMAGE) == wheelhouse._applicable(w.requires, IMAGE)
    assert {w.name for w in IMAGE.wheelhouse} == {"trl", "datasets", "accelerate"}


def test_build_fetches_once_checks_the_record_and_reuses_the_cache(tmp_path):
    calls = []

    def fetch(pins, dest, image):
        calls.append(list(pins))
        _local(_index(tmp_path / "index"))(pins, dest, image)

    folder = wheelhouse.build(IMAGE, fetch, root=tmp_path / "cache")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{w.name}-{w.version}-py3-none-any.whl" for w in IMAGE.wheelhouse)
    assert calls == [[w.pin for w in IMAGE.wheelhouse]]

    def offline(pins, dest, image):
        raise AssertionError("the cache should have answered")

    assert wheelhouse.build(IMAGE, offline, root=tmp_path / "cache") == folder
    assert wheelhouse.build(images.HF_TRAINING_IMAGES["4.56.2"], offline) is None  # no wheelhouse recorded


def test_offline_the_fetch_fails_with_the_fix(tmp_path, monkeypatch):
    for key in ("PIP_NO_INDEX", "PIP_FIND_LINKS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no mirror from this machine's pip.conf
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing answers there: offline
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(CloudftError) as err:
        wheelhouse.build(IMAGE, root=tmp_path / "cache")  # the default fetch: the real pip download
    assert "trl==1.16.0" in str(err.value) and "cannot fetch" in str(err.value)
    assert "aws.image_uri" in err.value.hint and str(tmp_path / "cache") in err.value.hint
    assert not list((tmp_path / "cache").glob("*"))  # nothing half-fetched left in the cache


def test_a_wheel_that_is_not_the_recorded_one_is_refused(tmp_path):
    changed = {"trl": (*IMAGE.wheelhouse[0].requires, "vllm>=0.22")}
    with pytest.raises(CloudftError, match=r"trl-1.16.0-py3-none-any.whl: requires \['vllm>=0.22'\]") as err:
        wheelhouse.build(IMAGE, _local(_index(tmp_path / "index", **changed)), root=tmp_path / "cache")
    assert "images.py" in err.value.hint
    assert not list((tmp_path / "cache").glob("*"))


def test_dry_run_stages_the_wheelhouse_and_nothing_to_download(no_aws, caplog):
    import logging

    prov, plan = plan_for(EXAMPLES / "aws-lora.yaml")  # the default Hugging Face image
    assert not prov.section.image_uri
    with caplog.at_level(logging.INFO, logger="cloudft.providers.aws.submit"):
        requests = prov.submit(plan, dry_run=True)
    keys = [r["params"]["Key"] for r in requests if r["operation"] == "PutObject"]
    for w in IMAGE.wheelhouse:
        assert any(k.endswith(f"/code/wheelhouse/{w.name}-{w.version}-py3-none-any.whl") for k in keys), w.name
    assert not [k for k in keys if k.endswith("/code/requirements.txt")]  # sm_train.sh installs nothing
    (line,) = [r.getMessage() for r in caplog.records if "code channel" in r.getMessage()]
    assert "downloaded at start: nothing" in line and "trl-1.16.0" in line


def _launcher_code(tmp_path: Path, requirements: str) -> Path:
    """A code channel with the launcher, a train_entry/requirements.txt and a one-wheel wheelhouse."""
    from cloudft.providers.aws.staging import LAUNCHER, TEMPLATES

    code = tmp_path / "code"
    (code / "train_entry").mkdir(parents=True)
    (code / "train_entry" / "requirements.txt").write_text(requirements)
    (code / LAUNCHER).write_text((TEMPLATES / LAUNCHER).read_text())
    write_wheel(code / "wheelhouse", "cloudft-probe", "1.0", ["packaging>=20"],
                {"cloudft_probe/__init__.py": "VALUE = 42\n"})
    (tmp_path / "ml" / "output").mkdir(parents=True)
    return code


def _run(code: Path, script: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(CLOUDFT_SM_ROOT=str(code.parent / "ml"), PIP_INDEX_URL="http://127.0.0.1:9/simple",
               PYTHONPATH=str(REPO))  # an index that answers nothing: any download would fail
    return subprocess.run([sys.executable, "-c", script], cwd=str(code), env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_launcher_installs_the_wheelhouse_without_an_index_then_checks_what_is_installed(tmp_path):
    code = _launcher_code(tmp_path, "cloudft-probe>=1.0\npackaging\n")
    proc = _run(code, "import json, runpy\n"
                      "L = runpy.run_path('cloudft_launch.py')\n"
                      "wheels = L['install_wheelhouse']()\n"
                      "again = L['install_wheelhouse']()\n"  # torchrun starts it once per process
                      "import cloudft_probe\n"
                      "print(json.dumps([cloudft_probe.VALUE, cloudft_probe.__file__, "
                      "L['check_requirements'](wheels=wheels)]))\n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    value, where, missing = json.loads(proc.stdout.splitlines()[-1])
    assert value == 42 and where.startswith(str(tmp_path / "ml" / "cloudft-packages"))
    assert missing == []
    assert (tmp_path / "ml" / "cloudft-packages" / ".installed").read_text() == "cloudft_probe-1.0-py3-none-any.whl"


def test_the_launcher_stops_a_job_whose_image_lacks_a_requirement(tmp_path):
    code = _launcher_code(tmp_path, "cloudft-probe>=2\nsurely-not-installed-pkg>=1\n")
    proc = _run(code, "import runpy; runpy.run_path('cloudft_launch.py', run_name='__main__')")
    assert proc.returncode == 1
    failure = (tmp_path / "ml" / "output" / "failure").read_text()  # SageMaker's FailureReason
    assert "cloudft-probe>=2 (train_entry needs it; has ==1.0)" in failure
    assert "surely-not-installed-pkg>=1 (train_entry needs it; not installed)" in failure
    assert "train_entry/Dockerfile" in failure and "Traceback" not in proc.stderr


def test_unmet_reads_ranges_as_at_least_and_at_most():
    unmet = launcher_module().unmet
    have = {"pandas": ">=2.2.3,<3", "numpy": "==1.26.4", "xxhash": "", "httpx": ">=0.23.0,<1"}
    ok = [("pandas>=2.1.1", "a"), ("pandas<3.1", "a"), ("pandas!=2.0.0", "a"), ("numpy>=1.26,<2", "a"),
          ("xxhash", "a"), ("httpx<1.0.0", "a"), ("vllm>=1; python_version < '3'", "a"), ("vllm; extra == 'x'", "a")]
    assert unmet(ok, have) == []
    bad = [("pandas>=2.5", "a"), ("pandas<2.9", "a"), ("pandas==2.3.3", "a"), ("xxhash>=3", "a"), ("vllm", "a"),
           ("numpy>=2", "a")]
    assert [r for r, _ in unmet(bad, have)] == [r for r, _ in bad]
    assert unmet([("vllm>=1; python_version >= '3.12'", "a")], have, {"python_version": "3.12"}) != []
