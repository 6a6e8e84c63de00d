"""Packaging and the runbook search path: a plain (not editable) install lists every built-in
runbook from any directory, and an operator's folders come first, each runbook saying where it
came from and which copy it shadows."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from drengine.errors import InputError
from drengine.runbook import BUILT_IN, RunbookSearch, builtin_runbooks
from tests.helpers import ROOT, cli

BUILT_INS = sorted(p.stem for p in (ROOT / "runbooks").glob("*.yaml"))


def _clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH and no runbook folders: only what the install itself brings."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DRENGINE_RUNBOOKS") and not k.startswith("PIP_")}
    return {**env, **extra}


def test_a_plain_install_lists_every_builtin_runbook_from_another_directory(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("drengine", "runbooks"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    python = target / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies (and pip, setuptools, wheel) come from this test's own environment, after
    # the fresh venv's site-packages: no network, and drengine itself only from the new install.
    Path(purelib, "shared-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q", str(source)],
        capture_output=True, text=True, env=_clean_env(), cwd=tmp_path, timeout=300, check=False)
    assert install.returncode == 0, install.stdout + install.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([python, "-c", "import drengine; print(drengine.__file__)"], capture_output=True,
                           text=True, env=_clean_env(), cwd=elsewhere, check=True).stdout.strip()
    assert Path(where).is_relative_to(target), f"drengine was imported from {where}, not from the fresh install"
    listed = subprocess.run([target / "bin" / "drengine", "runbook", "list"], capture_output=True, text=True,
                            env=_clean_env(), cwd=elsewhere, timeout=120, check=False)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines() if line and not line.startswith(" ")]
    assert names == BUILT_INS and len(names) == 9
    shipped = Path(purelib) / "drengine" / "runbooks"
    assert listed.stdout.count(f"from {BUILT_IN} ({shipped})") == 9
    # The other package data: the report templates.
    templates = sorted(p.name for p in (ROOT / "drengine" / "templates").glob("*.j2"))
    assert templates and sorted(p.name for p in (Path(purelib) / "drengine" / "templates").glob("*.j2")) == templates
    # The example inventories: a pip user starts from `drengine inventory init`.
    init = subprocess.run([target / "bin" / "drengine", "inventory", "init", "--example", "ceph"], capture_output=True,
                          text=True, env=_clean_env(), cwd=elsewhere, timeout=120, check=False)
    assert init.returncode == 0, init.stdout + init.stderr
    assert "kind: ceph" in (elsewhere / "inventory.yaml").read_text()


def _copy(runbook: str, folder: Path, summary: str) -> Path:
    text = (ROOT / "runbooks" / f"{runbook}.yaml").read_text()
    lines = [f"summary: {summary}" if line.startswith("summary:") else line for line in text.splitlines()]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{runbook}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_search_order_is_flag_then_environment_then_builtins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second, team = tmp_path / "first", tmp_path / "second", tmp_path / "team"
    _copy("mariadb-rejoin", second, "second copy")
    _copy("mariadb-rejoin", team, "team copy")
    _copy("ceph-restore", team, "team ceph")
    first.mkdir()
    monkeypatch.setenv("DRENGINE_RUNBOOKS", os.pathsep.join([str(team), ""]))
    search = RunbookSearch([first, second])
    assert [f.origin for f in search.folders] == ["--runbooks", "--runbooks", "DRENGINE_RUNBOOKS", BUILT_IN]
    assert search.folders[-1].path == builtin_runbooks()
    assert search.load("mariadb-rejoin").spec.summary == "second copy"
    assert search.load("ceph-restore").spec.summary == "team ceph"
    found = {f.name: f for f in search.found()}
    assert sorted(found) == BUILT_INS
    rejoin = found["mariadb-rejoin"]
    assert rejoin.folder.path == second.resolve()
    assert [s.folder.origin for s in rejoin.shadows] == ["DRENGINE_RUNBOOKS", BUILT_IN]

    code, out = cli("--runbooks", str(first), "runbook", "list", "--runbooks", str(second))
    assert code == 0, out
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("mariadb-rejoin "))
    assert "second copy" in lines[at]
    assert lines[at + 1].strip() == f"from --runbooks {second.resolve()}"
    assert lines[at + 2].strip() == f"shadows the copy in DRENGINE_RUNBOOKS {team.resolve()}"
    assert lines[at + 3].strip() == f"shadows the copy in {BUILT_IN} ({builtin_runbooks()})"
    code, out = cli("runbook", "show", "ceph-restore")
    assert code == 0 and f"file: {team.resolve() / 'ceph-restore.yaml'}" in out


def test_a_missing_runbook_folder_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = cli("runbook", "list", "--runbooks", str(tmp_path / "nope"))
    assert code == 2 and f"--runbooks names '{tmp_path / 'nope'}', which is not a directory" in out
    monkeypatch.setenv("DRENGINE_RUNBOOKS", str(tmp_path / "gone"))
    with pytest.raises(InputError, match="DRENGINE_RUNBOOKS names .*gone.*not a directory"):
        RunbookSearch()
    monkeypatch.delenv("DRENGINE_RUNBOOKS")
    code, out = cli("runbook", "show", "no-such-runbook", "--runbooks", str(tmp_path))
    assert code == 2 and "no runbook named 'no-such-runbook'" in out and f"--runbooks {tmp_path}" in out


def test_builtins_come_from_the_source_tree_when_run_from_a_checkout() -> None:
    assert builtin_runbooks() == ROOT / "runbooks"
    assert sys.modules["drengine"].__file__ == str(ROOT / "drengine" / "__init__.py")
