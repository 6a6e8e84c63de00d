"""Drill schedules rendered as systemd units and crontab lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from drengine.errors import ExitCode
from drengine.schedule import check_cron, on_calendar
from tests.helpers import ROOT, cli


@pytest.mark.parametrize("cron,calendar", [
    ("30 3 * * 1-5", "Mon..Fri *-*-* 3:30:00"),
    ("0 */6 * * *", "*-*-* 0/6:0:00"),
    ("15,45 2 1 * 0", "Sun *-*-1 2:15,45:00"),
    ("0 4 1-7 1,7 *", "*-1,7-1..7 4:0:00"),
])
def test_cron_to_on_calendar(cron: str, calendar: str) -> None:
    assert on_calendar(cron) == calendar


@pytest.mark.parametrize("bad", ["* * * *", "60 * * * *", "* 24 * * *", "*/0 * * * *", "a * * * *", "* * 0 * *"])
def test_bad_cron_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        check_cron(bad)


def test_systemd_units_for_the_lab_drills(tmp_path: Path) -> None:
    code, out = cli("drill", "schedule", "-f", str(ROOT / "drills" / "lab.yaml"), "--out", str(tmp_path))
    assert code == 0, out
    timer = (tmp_path / "drengine-drill-mariadb-kill-primary.timer").read_text()
    service = (tmp_path / "drengine-drill-mariadb-kill-primary.service").read_text()
    assert "OnCalendar=Mon..Fri *-*-* 3:30:00" in timer and "Persistent=true" in timer
    assert "Type=oneshot" in service and "WorkingDirectory=/var/lib/drengine" in service
    assert ("ExecStart=/usr/local/bin/drengine drill run mariadb-promote-survivor -i /etc/drengine/lab.yaml -c lab-mariadb "
            "--fault kill-primary --rto 30 --max-lost-writes 0 "
            "--textfile /var/lib/node_exporter/textfile/drengine_mariadb.prom") in service


def test_crontab_lines() -> None:
    code, out = cli("drill", "schedule", "-f", str(ROOT / "drills" / "lab.yaml"), "--format", "crontab")
    assert code == 0, out
    assert "0 */6 * * * cd /var/lib/drengine && /usr/local/bin/drengine drill run mariadb-promote-survivor" in out


def test_bad_drills_file_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "drills.yaml"
    bad.write_text((ROOT / "drills" / "lab.yaml").read_text().replace('"30 3 * * 1-5"', '"30 25 * * 1-5"'))
    code, out = cli("drill", "schedule", "-f", str(bad))
    assert code == 2
    assert f"{bad}:21: drills.0.schedule: hour field '25': values must lie between 0 and 23" in out


@pytest.mark.skipif(__import__("shutil").which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("cron", ["30 3 * * 1-5", "0 */6 * * *", "15,45 2 1 * 0", "0 4 1-7 1,7 *", "*/5 * * * 6-7"])
def test_systemd_accepts_the_calendar(cron: str) -> None:
    import subprocess

    result = subprocess.run(["systemd-analyze", "calendar", on_calendar(cron)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_objectives_per_cluster_and_per_drill_are_rendered(tmp_path: Path) -> None:
    code, out = cli("drill", "schedule", "-f", str(ROOT / "drills" / "lab.yaml"), "--format", "crontab")
    assert code == 0, out
    cut = next(line for line in out.splitlines() if "--fault cut-replication" in line)
    assert "--rto 30 --max-lost-writes 10" in cut  # the cluster's RTO, the drill's own lost writes


def test_notify_entries_make_the_drill_read_the_drills_file(tmp_path: Path) -> None:
    drills = tmp_path / "drills.yaml"
    drills.write_text((ROOT / "drills" / "lab.yaml").read_text().replace(
        "# notify:\n#   - name: oncall-slack\n#     format: slack\n#     url_secret: {env: DRENGINE_SLACK_WEBHOOK}",
        "notify:\n  - name: oncall-slack\n    format: slack\n    url_secret: {env: DRENGINE_SLACK_WEBHOOK}"))
    code, out = cli("drill", "schedule", "-f", str(drills), "--format", "crontab")
    assert code == 0, out
    assert f"--drills {drills.resolve()}" in out


@pytest.mark.parametrize("entry,problem", [
    ("{name: x, url: 'ftp://a/b'}", "notify.0.url"),
    ("{name: x}", "exactly one of `url: http(s)://...` or `url_secret: {env: VAR}`"),
    ("{name: x, url: 'http://127.0.0.1/', timeout: 300}", "notify.0.timeout"),
    ("{name: x, url: 'http://127.0.0.1/', events: [sometimes]}", "notify.0.events.0"),
])
def test_bad_notify_entries_name_the_line(tmp_path: Path, entry: str, problem: str) -> None:
    drills = tmp_path / "drills.yaml"
    drills.write_text(f"notify:\n  - {entry}\n" + (ROOT / "drills" / "lab.yaml").read_text())
    code, out = cli("drill", "schedule", "-f", str(drills))
    assert code == 2, out
    assert f"{drills}:2" in out and problem in out, out


def test_site_drills_are_scheduled_as_drill_site(tmp_path: Path) -> None:
    code, out = cli("drill", "schedule", "-f", str(ROOT / "drills" / "lab.yaml"), "--out", str(tmp_path))
    assert code == 0, out
    service = (tmp_path / "drengine-drill-site-lose-host1.service").read_text()
    assert ("ExecStart=/usr/local/bin/drengine drill site --lose-host host1 -i /etc/drengine/lab-site.yaml "
            "--rto 300 --max-lost-writes 0") in service
    assert "site of /etc/drengine/lab-site.yaml, host host1 lost (kill)" in service
    assert "OnCalendar=Sat *-*-* 4:0:00" in (tmp_path / "drengine-drill-site-lose-host1.timer").read_text()
    code, out = cli("drill", "schedule", "-f", str(ROOT / "drills" / "lab.yaml"), "--format", "crontab")
    assert "0 4 * * 6 cd /var/lib/drengine && /usr/local/bin/drengine drill site --lose-host host1" in out


def test_a_drills_file_of_site_drills_only(tmp_path: Path) -> None:
    only = tmp_path / "site.yaml"
    only.write_text("site_drills:\n  - {name: s3, inventory: /etc/site.yaml, lose_host: s3, hang: true,"
                    " schedule: '15 2 * * *'}\n")
    code, out = cli("drill", "schedule", "-f", str(only), "--format", "crontab")
    assert code == 0, out
    assert "15 2 * * * cd /var/lib/drengine && /usr/local/bin/drengine drill site --lose-host s3 -i /etc/site.yaml --hang" in out
    none = tmp_path / "none.yaml"
    none.write_text("workdir: /var/lib/drengine\n")
    code, out = cli("drill", "schedule", "-f", str(none))
    assert code == ExitCode.INVALID_INPUT and "no drill; expected `drills:` or `site_drills:`" in out
    twice = tmp_path / "twice.yaml"
    twice.write_text((ROOT / "drills" / "lab.yaml").read_text().replace("name: site-lose-host1", "name: mariadb-kill-primary"))
    code, out = cli("drill", "schedule", "-f", str(twice))
    assert code == ExitCode.INVALID_INPUT and "repeated: mariadb-kill-primary" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("site_drills:\n  - {name: s3, inventory: /etc/site.yaml, lose_host: s3, schedule: '15 2 * * *',"
                   " rto: 5}\n")
    code, out = cli("drill", "schedule", "-f", str(bad))
    assert code == ExitCode.INVALID_INPUT and "bad.yaml:2" in out
