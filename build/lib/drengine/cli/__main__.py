"""`python -m drengine.cli`: the command line, as the tests, the bench and the lab's service
templates start it (the same as the installed `drengine` script)."""

from drengine.cli.app import entry

entry()
