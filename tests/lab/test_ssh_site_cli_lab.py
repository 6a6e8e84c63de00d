"""`drengine lab up ssh-site` and `lab down`, as the README's "Point it at your site" uses them: a
site's hosts (sudo users, a bastion, hosts behind it) written to an inventory that
`inventory check --connect` passes, and everything gone after `lab down` (processes, users,
sudoers file)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from drengine.lab import ssh_site
from drengine.lab.procs import LabDir, is_ours
from tests.helpers import cli

pytestmark = pytest.mark.lab


def test_lab_up_ssh_site_then_check_then_down(monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(tempfile.mkdtemp(prefix="drengine-site-cli-"))
    inventory = root / "site.yaml"
    try:
        code, out = cli("lab", "up", "ssh-site", "--dir", str(root / "lab"), "--inventory-out", str(inventory))
        assert code == 0, out
        export = next(line.strip() for line in out.splitlines() if line.strip().startswith("export "))
        assert export == f'export {ssh_site.SUDO_PASSWORD_ENV}="$(cat {root / "lab" / "ssh" / "sudo_password"})"'
        hosts = yaml.safe_load(inventory.read_text())["hosts"]
        assert {"ops1", "bastion", *ssh_site.INNER_HOSTS} <= set(hosts)
        # Without the password in the environment: the one failure is named, exit 1.
        monkeypatch.delenv(ssh_site.SUDO_PASSWORD_ENV, raising=False)
        code, out = cli("inventory", "check", "-i", str(inventory), "--connect")
        assert code == 1 and f"environment variable {ssh_site.SUDO_PASSWORD_ENV} is not set" in out, out
        monkeypatch.setenv(ssh_site.SUDO_PASSWORD_ENV, (root / "lab" / "ssh" / "sudo_password").read_text())
        code, out = cli("inventory", "check", "-i", str(inventory), "--connect")
        assert code == 0, out
        for name in ssh_site.INNER_HOSTS:
            row = next(line for line in out.splitlines() if f"host {name} " in line and " ssh " in line)
            assert f"{ssh_site.OPS_USER}@{ssh_site.INNER_HOSTS[name]}:{ssh_site.PORT} via bastion" in row, row
        assert out.count(" sudo    ok ") == 1 + len(ssh_site.INNER_HOSTS), out
    finally:
        code, out = cli("lab", "down", "--dir", str(root / "lab"))
        left = [p for p in LabDir(root / "lab").processes() if is_ours(p)]
        shutil.rmtree(root, ignore_errors=True)
    assert code == 0 and f"removed lab user {ssh_site.OPS_USER}" in out, out
    assert not left and not ssh_site.SUDOERS.exists()
    assert subprocess.run(["id", ssh_site.OPS_PASSWORD_USER], check=False, capture_output=True).returncode != 0
