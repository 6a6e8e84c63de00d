"""Drill kits: per datastore, the faults, the health check and the canaries."""
