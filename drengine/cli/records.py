"""What a run leaves behind, read back: `drengine journal verify|show` (the hash chain checked,
the events in the live line's words) and `drengine report` (Markdown, HTML, JUnit XML or
Prometheus text, from the journal alone)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from drengine.cli.options import help_if_bare
from drengine.cli.terminal import out, progress


@click.group("journal", invoke_without_command=True)
@click.pass_context
def journal_group(ctx: click.Context) -> None:
    """Run journals: verify and show."""
    help_if_bare(ctx)


@journal_group.command("verify")
@click.argument("path", type=click.Path())
@click.option("--no-registry", is_flag=True, help="Check the hash chain alone, not the head kept in the run registry.")
def journal_verify(path: str, no_registry: bool) -> None:
    """Check the hash chain, then compare the journal's head with the one the run registry kept
    (etcd or the local registry): exit 1 naming the first bad line, or the run and what differs
    (events cut off the end, the journal rewritten); exit 4 when the registry cannot be read."""
    if no_registry:
        from drengine.journal import verify

        out(f"{path}: OK, {verify(path)} events, chain intact (not compared with the run registry: --no-registry)")
        return
    from drengine.anchor import verify_anchored

    count, check = verify_anchored(path)
    out(f"{path}: OK, {count} events, chain intact; {check.text}")


@journal_group.command("show")
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
def journal_show(path: str, as_json: bool) -> None:
    """Show a run's journal (a run directory or the journal file) event by event."""
    from drengine.journal import read_entries, resolve_journal

    for entry in read_entries(resolve_journal(path)):
        if as_json:
            out(json.dumps({"seq": entry.seq, "ts": entry.ts, "type": entry.type.value, "data": entry.data}))
        else:
            progress(entry)


@click.command()
@click.argument("run_dir", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["md", "html", "junit", "prom", "markdown"]), default="md",
              show_default=True, help="Markdown, self-contained HTML, JUnit XML or Prometheus text.")
@click.option("--out", "out_file", type=click.Path(),
              help="Where to write it (default: next to the journal: report.md, report.html, junit.xml, drill.prom); "
                   "`-` prints it.")
def report(run_dir: str, fmt: str, out_file: str | None) -> None:
    """Write the report of a run from its journal alone."""
    from drengine.files import atomic_write
    from drengine.journal import resolve_journal
    from drengine.report import FORMATS, render

    fmt = "md" if fmt == "markdown" else fmt
    journal = resolve_journal(run_dir)
    text = render(journal.parent, fmt)
    if out_file == "-":
        out(text.rstrip("\n"))
    else:
        path = Path(out_file) if out_file else journal.parent / FORMATS[fmt]
        atomic_write(path, text)
        out(str(path))
    _refuse_tampered(journal)


def _refuse_tampered(journal: Path) -> None:
    """The report of a journal that fails its hash chain is written (titled TAMPERED, for the
    investigation), but the command fails: a script must not take it as the run's record."""
    from drengine.anchor import anchor_words
    from drengine.errors import JournalCorrupt
    from drengine.journal import verified_chain

    try:
        check = anchor_words(journal, verified_chain(journal))
        if not check.ok:
            raise JournalCorrupt(check.text)
    except JournalCorrupt as exc:
        raise JournalCorrupt(f"TAMPERED: {exc}; the report says so in its title. Compare with a copy of the "
                             f"journal kept elsewhere") from None
