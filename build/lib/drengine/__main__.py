"""`python -m drengine`: the command line, for places that name the interpreter rather than the
installed `drengine` script (the lab's service templates, subprocesses of the tests)."""

from drengine.cli import entry

entry()
