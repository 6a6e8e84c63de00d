"""drengine: a disaster-recovery runbook engine for datastore clusters."""

__version__ = "0.1.0"
