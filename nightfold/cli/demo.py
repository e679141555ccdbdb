"""``nightfold demo``: the whole pipeline on the embedded backends."""

from __future__ import annotations

import click


@click.command("demo")
def demo_cmd() -> None:
    """Run the whole pipeline locally on embedded backends (coming soon)."""
    click.echo("nightfold demo: not yet available (see the embedded-default issue)")
