"""The built wheel, installed outside the checkout, carries its configs and runs a tiny job from an empty folder.

The wheel is built from a copy of the sources (nothing is written into the checkout) and installed
with ``--no-deps`` into a fresh virtual environment; that environment sees the project's installed
dependencies through a ``.pth`` line (``.pth`` files in that folder are not processed, so the
checkout's editable install stays invisible and ``import blockprune`` must find the wheel's copy).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from helpers.jobs import TINY_CLI
from helpers.paths import ROOT, SHARED

TINY = [o for o in TINY_CLI if not o.startswith("teacher.")]  # the installed entry fine-tunes its teacher


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel of this checkout installed; returns its bin folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src-copy"
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", str(src), "-w", str(tmp / "dist")], check=True, timeout=600
    )
    (wheel,) = (tmp / "dist").glob("blockprune-*.whl")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", str(wheel)], check=True, timeout=600)
    return env_dir / "bin"


def _run(bin_dir: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "BLOCKPRUNE_SHARED": str(SHARED), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    for key in ("BLOCKPRUNE_ROOT", "PYTHONPATH"):
        env.pop(key, None)
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=900)


@pytest.mark.slow
def test_the_installed_package_has_its_configs_and_no_source_tree(installed, tmp_path):
    probe = _run(
        installed,
        [
            str(installed / "python"),
            "-c",
            "import blockprune, blockprune.config as c; print(blockprune.__file__); "
            "print(c.CONFIG_DIR); print(c.project_root()); print(c.entry_script())",
        ],
        tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    module, conf, root, entry = probe.stdout.split()
    assert (
        str(ROOT) not in module
        and Path(conf, "config.yaml").is_file()
        and Path(conf, "teacher", "default.yaml").is_file()
    )
    assert Path(root) == tmp_path.resolve()  # outside a checkout outputs go under the working folder
    assert Path(entry).name == "main.py" and str(ROOT) not in entry


@pytest.mark.slow
def test_blockprune_train_from_an_empty_folder_runs_a_tiny_job_with_a_users_config_dir(installed, tmp_path):
    user = tmp_path / "myconf" / "model"
    user.mkdir(parents=True)
    # A user's own model option, found through Hydra's --config-dir like any Hydra app's.
    (user / "tinier.yaml").write_text(
        (
            Path(
                _run(
                    installed,
                    [str(installed / "python"), "-c", "import blockprune.config as c; print(c.CONFIG_DIR)"],
                    tmp_path,
                ).stdout.strip()
            )
            / "model"
            / "tiny.yaml"
        )
        .read_text()
        .replace("hidden_size: 128", "hidden_size: 64"),
        encoding="utf-8",
    )
    work = tmp_path / "empty"
    work.mkdir()
    proc = _run(
        installed,
        [
            "blockprune",
            "train",
            "--config-dir",
            str(tmp_path / "myconf"),
            *TINY,
            "model=tinier",
            "prune.sparsity=0.5",
            "hydra.run.dir=job",
        ],
        work,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((work / "job" / "results.json").read_text())
    assert results["status"] == "completed" and results["pruning"]["target_sparsity"] == 0.5
    assert results["config"]["model"]["net"]["hidden_size"] == 64
    assert (work / "job" / "model" / "README.md").is_file()
    # The tiny model is no fine-tuned classifier: its dense teacher was fine-tuned by the installed
    # package's own entry (no train.py here), under the working folder, with the user's config dir.
    teacher = Path(results["config"]["init_from"])
    assert teacher.parent.parent == (work / ".cache" / "teachers").resolve()
    assert json.loads((teacher.parent / "results.json").read_text())["config"]["model"]["net"]["hidden_size"] == 64
    # python -m blockprune is the same entry
    helped = _run(installed, [str(installed / "python"), "-m", "blockprune", "--help"], work)
    assert helped.returncode == 0 and "train" in helped.stdout
