"""The command line: the only place that parses argv, prints and picks exit codes.

One module per command family, all registered on the group in app.py, which also holds the one
error boundary (`run_cli`: every error becomes one clear message and a documented exit code):

  app.py       the `drengine` group, `completion`, the error boundary and exit codes, `entry`
  terminal.py  rich output (colour only at a terminal, redacted), tables, the live line, gate prompts
  options.py   shared options (--runbooks, -i, -c), bare groups show help, shell completion of names
  recovery.py  run (start, resume) and plan
  drills.py    drill run, history, schedule
  catalog.py   runbook list/show, inventory check
  fleet.py     status
  site.py      site plan/run, drill site, and the site part of status
  runs.py      runs list/show and the lock's run registry
  records.py   journal verify/show, report
  explore.py   explore
  lab.py       lab up/status/down, and the hidden lab node / lab serve

`drengine.cli:entry` is the installed script; `python -m drengine.cli` runs it too.
"""

from drengine.cli.app import entry, main, run_cli

__all__ = ["entry", "main", "run_cli"]
