"""The built wheel works on its own: installed with ``--no-deps`` into an empty
folder (the dependencies are those of the test environment), away from the
checkout, it runs ``psic --version``, ``psic demo``, ``eval_model checkpoint``
on real photos for both paths and ``update_model``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import ROOT

pytestmark = pytest.mark.slow

PHOTOS = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")


def _run(args, cwd: Path, site: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site))
    done = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _build_and_install(build: Path, env=None) -> Path:
    build.mkdir(parents=True, exist_ok=True)
    # A copy of the source: setuptools leaves build/ in the tree it builds, and a
    # stale build/ of an older tree could slip removed modules into the wheel.
    source = build / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".*cache",
            "*.so",  # the extension built in place: the wheel builds its own
        ),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", build, source],
        check=True,
        capture_output=True,
        timeout=600,
        env=env,
    )
    (wheel,) = build.glob("compressai_psic-*.whl")
    site = build / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps"]
        + ["--target", site, wheel],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return site


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    return _build_and_install(tmp_path_factory.mktemp("wheel"))


def _bounded_decoder_available(site: Path, cwd: Path) -> bool:
    code = "from compressai_psic.models import rans; print(rans.available())"
    return _run(["-c", code], cwd, site).stdout.strip() == "True"


def test_the_wheel_carries_the_bounded_decoder(installed, tmp_path):
    assert list((installed / "compressai_psic" / "models").glob("_bounded_rans*"))
    assert _bounded_decoder_available(installed, tmp_path)


def test_without_a_c_compiler_the_wheel_builds_and_decodes_with_padding(tmp_path):
    env = dict(os.environ, CC="false")  # every compile fails
    site = _build_and_install(tmp_path / "build", env)
    assert not list((site / "compressai_psic" / "models").glob("_bounded_rans*"))
    assert not _bounded_decoder_available(site, tmp_path)
    code = (
        "import torch\n"
        "from compressai_psic.models import guard\n"
        "from compressai_psic.zoo import image_models\n"
        "net = image_models['bmshj2018-hyperprior'](1, pretrained=False).eval()\n"
        "net(torch.zeros(1, 3, 64, 64)); net.update(force=True)\n"
        "out = net.compress(torch.rand(1, 3, 64, 64))\n"
        "assert guard.read_in_bounds(net) == (False, False)\n"
        "x = net.decompress(out['strings'], out['shape'],\n"
        "                   symbols_digest=out['symbols_digest'])['x_hat']\n"
        "print(tuple(x.shape))\n"
    )
    assert _run(["-c", code], tmp_path, site).stdout.strip() == "(1, 3, 64, 64)"


def test_wheel_metadata(installed):
    from compressai_psic import __version__

    (info,) = installed.glob("compressai_psic-*.dist-info")
    assert info.name == f"compressai_psic-{__version__}.dist-info"
    metadata = (info / "METADATA").read_text()
    assert "License: BSD-3-Clause-Clear" in metadata
    assert "Classifier: License :: OSI Approved :: BSD License" in metadata
    assert "Project-URL: Paper, https://arxiv.org/abs/2506.15201" in metadata
    assert (info / "licenses" / "LICENSE").is_file()
    assert (installed / "compressai_psic" / "py.typed").is_file()
    assert list((installed / "compressai_psic" / "zoo_files").glob("demo-psic-*"))
    configs = installed / "compressai_psic" / "vlp" / "model_configs"
    assert (configs / "vit.json").is_file() and len(list(configs.glob("*.json"))) == 6


def test_wheel_runs_the_tools(installed, tmp_path):
    work = tmp_path / "work"
    photos = work / "photos"
    photos.mkdir(parents=True)
    samples = pytest.importorskip("matplotlib").get_data_path()
    for name in PHOTOS:
        shutil.copy(Path(samples) / "sample_data" / name, photos / name)

    def run(*args):
        return _run(args, work, installed)

    where = run("-c", "import compressai_psic; print(compressai_psic.__file__)")
    assert where.stdout.strip().startswith(str(installed))
    from compressai_psic import __version__

    assert run("-m", "compressai_psic", "--version").stdout.startswith(
        f"psic {__version__} ("
    )
    # The shipped demo codec, as the installed manifest names it.
    zoo_files = installed / "compressai_psic" / "zoo_files"
    manifest = json.loads((zoo_files / "manifest.json").read_text())
    (entry,) = [e for e in manifest["models"] if e["name"] == "demo-psic"]
    weights = zoo_files / entry["file"]
    argv = ["-m", "compressai_psic.utils.eval_model", "checkpoint", "photos"]
    done = run(*argv, "-p", weights, "-d", "out", "--no-progress")
    results = json.loads(done.stdout)
    for label in ("full", "protected"):
        data = json.loads((work / "out" / f"psic-{weights.stem.split('.')[0]}-"
                           f"{label}.json").read_text())  # fmt: skip
        assert data["results"] == results[label]["results"]
        assert data["num_images"] == [2]
        assert 10 < data["results"]["psnr-rgb"][0] < 60
    exported = run(
        "-m", "compressai_psic.utils.update_model", weights, "-n", "mine", "-d", "exp"
    )
    entry = json.loads(exported.stdout)
    assert (work / "exp" / entry["file"]).is_file()
    assert entry["file"] == f"mine-{entry['sha256'][:8]}.pth.tar"
    run("-m", "compressai_psic", "demo", "-n", "4", "--no-robustness", "-o", "demo")
    assert json.loads((work / "demo" / "report.json").read_text())["num_images"] == 4
