"""The installed distribution: one import name (`mer_data`), with the repository's model/, pipelines/
and schemas/ folders mapped under it (setup.py), and the CLI working from a non-editable install."""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("mer_data", "model", "pipelines", "schemas", "setup.py", "pyproject.toml", "README.md", "LICENSE")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built offline from a copy of the sources (the build writes build/ beside them)."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif path.exists():
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "-w", str(out), str(source)], check=True, capture_output=True)
    (built,) = out.glob("mer_data-*.whl")
    return built


def test_the_wheel_has_one_top_level_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"mer_data", wheel.name.split("-py3")[0] + ".dist-info"}
    # the mapped folders, their subpackages and the package data are all inside it
    for expected in ("mer_data/model/train.py", "mer_data/model/features/registry.py",
                     "mer_data/pipelines/runner.py", "mer_data/schemas/dataset.schema.json",
                     "mer_data/shards/folder.py", "mer_data/data/splits/dai2021/iemocap/train.txt"):
        assert expected in names, expected


def test_a_non_editable_install_runs_the_cli(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # `pip install <wheel>` into the new environment (no index: nothing is fetched); the dependencies
    # come from this interpreter's environment, mer_data itself only from the wheel
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True)
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    probe = ("import importlib.util, mer_data.model.train, mer_data.pipelines.convert, mer_data.schemas as s;"
             "print(mer_data.model.train.__file__);"
             "print([n for n in ('model', 'pipelines', 'schemas') if importlib.util.find_spec(n)])")
    result = subprocess.run([python, "-c", probe], cwd=outside, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    location, top_level = result.stdout.splitlines()
    assert location.startswith(str(site / "mer_data" / "model"))
    assert top_level == "[]"
    cli = subprocess.run([env_dir / "bin" / "mer", "demo", "--help"], cwd=outside, capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert "The whole job on an embedded default" in cli.stdout
