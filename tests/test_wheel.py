"""The built wheel installs into a scratch venv and works from any directory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_and_runs(tmp_path: Path) -> None:
    # build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout
    src = tmp_path / "src"
    keep = ("pyproject.toml", "README.md", "streamsim", "models", "dashboards", "scenarios")
    for name in keep:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif (ROOT / name).is_file():
            src.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
         str(dist), str(src)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    wheels = sorted(dist.glob("streamsim-*.whl"))
    assert len(wheels) == 1, list(dist.iterdir())
    env_dir = tmp_path / "venv"
    # the scratch venv sees the test interpreter's packages (torch, duckdb...) through a .pth
    # line (a plain path: the editable install's own .pth hooks there are not run), and the
    # wheel's streamsim comes first on sys.path
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site_dir = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site_dir) / "_outer_site.pth").write_text("\n".join(sorted(ours)) + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
         "--ignore-installed", str(wheels[0])],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cli = subprocess.run(
        [str(env_dir / "bin" / "streamsim"), "--help"],
        capture_output=True, text=True, cwd=elsewhere, timeout=300,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert "Usage" in cli.stdout
    assert "ingest" in cli.stdout
    check = (
        "import pathlib, streamsim, models, dashboards;"
        "print(pathlib.Path(streamsim.__file__).parent.parent);"
        "from streamsim.resources import bundled_scenario_dir;"
        "print(sorted(p.name for p in bundled_scenario_dir().glob('*.toml')))"
    )
    probe = subprocess.run(
        [str(py), "-c", check], capture_output=True, text=True, cwd=elsewhere, timeout=300
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    lines = probe.stdout.splitlines()
    # imported from the wheel's site-packages, not from the source tree
    assert Path(lines[0]).resolve() != ROOT
    shipped = sorted(p.name for p in (ROOT / "scenarios").glob("*.toml"))
    assert shipped
    assert lines[1] == str(shipped)
    listed = subprocess.run(
        [str(env_dir / "bin" / "streamsim"), "scenarios", "list", "--json"],
        capture_output=True, text=True, cwd=elsewhere, timeout=300,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-2000:]
    names = sorted(entry["name"] for entry in json.loads(listed.stdout))
    assert names == sorted(name.removesuffix(".toml") for name in shipped)
