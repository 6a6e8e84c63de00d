"""A site: the clusters of one inventory together, the dependencies between them
(`depends_on:`) and the hosts they share.

  graph.py    the dependency graph: unknown names and cycles refused, dependency order
  view.py     `drengine status` for a site: every cluster in dependency order, what is broken,
              what waits for a dependency, and what to do first
  goals.py    does a cluster hold now: its run's goal checked again, or a healthy status
  plan.py     `drengine site plan`: one runbook per broken cluster, dependencies first, read-only
  run.py      `drengine site run`: each cluster's run through the engine's start_run, gated on
              its dependencies holding on a fresh observation; the site journal; resume
  drill.py    `drengine drill site --lose-host HOST`: every member on a host lost at once
  report.py   the site drill's report: per cluster figures, the timelines on one chart
  lab.py      the real labs as one site (`drengine lab up site`)
"""
