"""Scheduled drills: a drills file (YAML) lists drills with cron-style schedules and their
recovery objectives (per drill, or per cluster for every drill of it) and the webhooks to
notify, rendered as systemd timer and service units or crontab lines. No daemon of
drengine's own: the system's scheduler runs `drengine drill`, which writes its journal and
reports."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from drengine.errors import InputError
from drengine.inventory import NotifyTarget
from drengine.objectives import Objectives
from drengine.yamlsrc import load_yaml, validate

FIELDS = [("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7)]
DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
PART_RE = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?$")


def check_cron(expr: str) -> list[str]:
    """The five cron fields, each checked against its bounds."""
    parts = expr.split()
    if len(parts) != 5:
        raise ValueError(f"a schedule has five fields (minute hour day-of-month month day-of-week); got {len(parts)}")
    for part, (name, low, high) in zip(parts, FIELDS, strict=True):
        for item in part.split(","):
            if not PART_RE.match(item):
                raise ValueError(f"{name} field {part!r}: expected *, N, N-M, */S or N-M/S")
            numbers = [int(n) for n in re.findall(r"\d+", item.split("/")[0])]
            if any(n < low or n > high for n in numbers):
                raise ValueError(f"{name} field {part!r}: values must lie between {low} and {high}")
            if "/" in item and int(item.split("/")[1]) == 0:
                raise ValueError(f"{name} field {part!r}: a step must be at least 1")
    return parts


class Drill(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,60}$")
    runbook: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    inventory: str = Field(pattern=r"^[^\x00\n]+$")
    cluster: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    fault: str = Field(pattern=r"^[a-z0-9-]{1,60}$")
    schedule: str
    textfile: str | None = Field(default=None, pattern=r"^/[^\x00\n]+\.prom$",
                                 description="node-exporter textfile collector file to write")
    objectives: Objectives | None = Field(default=None, description="over the cluster's objectives, figure by figure")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        check_cron(value)
        return value


class SiteDrill(BaseModel):
    """A scheduled `drengine drill site --lose-host HOST`: every member on HOST lost at once, the
    site recovered unattended; `objectives.rto` is the site's, `objectives.lost_writes` each
    cluster's."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,60}$")
    inventory: str = Field(pattern=r"^[^\x00\n]+$")
    lose_host: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", description="the inventory host lost")
    hang: bool = Field(default=False, description="hang (SIGSTOP) the members instead of killing them")
    schedule: str
    objectives: Objectives | None = None

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        check_cron(value)
        return value


class ClusterDrills(BaseModel):
    """What holds for every drill of one cluster."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    objectives: Objectives = Objectives()


class DrillsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str = ""
    workdir: str = Field(default="/var/lib/drengine", pattern=r"^/[^\x00\n]*$",
                         description="where drills run: runs/ (journals, reports) goes below it")
    drengine: str = Field(default="/usr/local/bin/drengine", pattern=r"^/[^\x00\n]*$")
    clusters: dict[str, ClusterDrills] = Field(default_factory=dict, description="objectives per cluster")
    notify: list[NotifyTarget] = Field(default_factory=list, description="webhooks told about gates, run ends, missed objectives")
    drills: list[Drill] = Field(default_factory=list)
    site_drills: list[SiteDrill] = Field(default_factory=list, description="`drill site --lose-host` drills")

    def objectives_for(self, cluster: str, runbook: str | None = None, fault: str | None = None) -> Objectives:
        """The cluster's objectives, with those of the drill of this runbook and fault over them."""
        base = self.clusters[cluster].objectives if cluster in self.clusters else Objectives()
        for drill in self.drills:
            if drill.cluster == cluster and drill.runbook == runbook and drill.fault == fault and drill.objectives:
                return drill.objectives.over(base)
        return base

    def objectives_of(self, drill: Drill) -> Objectives:
        base = self.clusters[drill.cluster].objectives if drill.cluster in self.clusters else Objectives()
        return drill.objectives.over(base) if drill.objectives else base


def load_drills(path: str | Path) -> DrillsFile:
    source = load_yaml(path)
    if source.data is None:
        raise InputError(f"{path}:1: the drills file is empty; expected `drills:` with at least one drill")
    spec = validate(source, DrillsFile).model_copy(update={"path": str(Path(path).resolve())})
    if not spec.drills and not spec.site_drills:
        raise InputError(f"{path}: no drill; expected `drills:` or `site_drills:` with at least one drill")
    names = [d.name for d in spec.drills] + [d.name for d in spec.site_drills]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"{path}: drill names must be unique; repeated: {', '.join(dupes)}")
    return spec


def _calendar_part(part: str, name: str) -> str:
    out = []
    for item in part.split(","):
        base, _, step = item.partition("/")
        if base == "*":
            base = {"minute": "0", "hour": "0", "day of month": "1", "month": "1"}.get(name, "*") if step else "*"
        base = base.replace("-", "..")
        out.append(f"{base}/{step}" if step else base)
    return ",".join(out)


def on_calendar(expr: str) -> str:
    """A cron expression as systemd's OnCalendar (day of week as names; `a-b` as `a..b`)."""
    minute, hour, dom, month, dow = check_cron(expr)
    parts = [_calendar_part(p, n) for p, (n, _, _) in zip((minute, hour, dom, month), FIELDS, strict=False)]
    days = ""
    if dow != "*":
        names = []
        for item in dow.split(","):
            if "/" in item:
                raise InputError(f"schedule {expr!r}: steps in the day-of-week field have no systemd equivalent")
            if "-" in item:
                a, b = (int(x) for x in item.split("-"))
                names.append(f"{DAYS[a]}..{DAYS[b]}")
            else:
                names.append(DAYS[int(item)])
        days = ",".join(names) + " "
    return f"{days}*-{parts[3]}-{parts[2]} {parts[1]}:{parts[0]}:00"


def drill_argv(spec: DrillsFile, drill: Drill) -> list[str]:
    argv = [spec.drengine, "drill", "run", drill.runbook, "-i", drill.inventory, "-c", drill.cluster, "--fault", drill.fault]
    objectives = spec.objectives_of(drill)
    if objectives.rto is not None:
        argv += ["--rto", f"{objectives.rto:g}"]
    if objectives.lost_writes is not None:
        argv += ["--max-lost-writes", str(objectives.lost_writes)]
    if spec.notify:
        argv += ["--drills", spec.path]  # the webhooks to notify are read from the drills file at run time
    if drill.textfile:
        argv += ["--textfile", drill.textfile]
    return argv


def site_drill_argv(spec: DrillsFile, drill: SiteDrill) -> list[str]:
    argv = [spec.drengine, "drill", "site", "--lose-host", drill.lose_host, "-i", drill.inventory]
    if drill.hang:
        argv.append("--hang")
    if drill.objectives is not None and drill.objectives.rto is not None:
        argv += ["--rto", f"{drill.objectives.rto:g}"]
    if drill.objectives is not None and drill.objectives.lost_writes is not None:
        argv += ["--max-lost-writes", str(drill.objectives.lost_writes)]
    return argv


def _scheduled(spec: DrillsFile) -> list[tuple[str, str, str, list[str]]]:
    """Every drill of the file: (name, schedule, what it does, its command line)."""
    rows = [(d.name, d.schedule, f"{d.runbook} on {d.cluster} ({d.fault})", drill_argv(spec, d)) for d in spec.drills]
    rows += [(d.name, d.schedule, f"site of {d.inventory}, host {d.lose_host} lost ({'hang' if d.hang else 'kill'})",
              site_drill_argv(spec, d)) for d in spec.site_drills]
    return rows


def systemd_units(spec: DrillsFile) -> dict[str, str]:
    units = {}
    for name, schedule, what, argv in _scheduled(spec):
        unit = f"drengine-drill-{name}"
        command = " ".join(shlex.quote(a).replace("%", "%%") for a in argv)
        units[f"{unit}.service"] = (
            f"[Unit]\nDescription=drengine DR drill {name}: {what}\n"
            f"After=network-online.target\nWants=network-online.target\n\n"
            f"[Service]\nType=oneshot\nWorkingDirectory={spec.workdir}\nExecStart={command}\n"
        )
        units[f"{unit}.timer"] = (
            f"[Unit]\nDescription=Schedule of drengine DR drill {name} (cron: {schedule})\n\n"
            f"[Timer]\nOnCalendar={on_calendar(schedule)}\nPersistent=true\n"
            f"Unit={unit}.service\n\n[Install]\nWantedBy=timers.target\n"
        )
    return units


def crontab(spec: DrillsFile) -> str:
    lines = ["# drengine DR drills (install with `crontab FILE`); each run writes runs/<run-id>/ below the workdir"]
    for _, schedule, _, argv in _scheduled(spec):
        command = " ".join(shlex.quote(a) for a in argv).replace("%", "\\%")
        lines.append(f"{schedule} cd {shlex.quote(spec.workdir)} && {command}")
    return "\n".join(lines) + "\n"
