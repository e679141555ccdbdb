"""The ``nightfold`` command: every NightfoldError becomes one line and an exit code."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from nightfold import __version__
from nightfold.cli.data import seed_cmd, verify_cmd
from nightfold.cli.dbcmd import db
from nightfold.cli.demo import demo_cmd
from nightfold.cli.mastercmd import master, retry_cmd
from nightfold.cli.ops import cancel_cmd, config, gc_cmd, quarantine_cmd, status_cmd
from nightfold.cli.webcmd import web_cmd
from nightfold.cli.workercmd import worker
from nightfold.common.errors import RET_ERROR, NightfoldError


class NightfoldGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NightfoldError as exc:
            _die(str(exc), exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            _die("interrupted", 130)
        except Exception as exc:
            if os.environ.get("NIGHTFOLD_DEBUG"):
                raise
            logging.getLogger("nightfold").debug("unexpected error", exc_info=True)
            first = str(exc).splitlines()[0] if str(exc) else ""
            _die(
                f"unexpected {type(exc).__name__}: {first} (NIGHTFOLD_DEBUG=1 shows the traceback)",
                RET_ERROR,
            )


def _die(message: str, code: int) -> None:
    from nightfold.common.urls import mask_url

    click.echo(f"nightfold: error: {mask_url(message)}", err=True)
    sys.exit(code)


@click.group(cls=NightfoldGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nightfold")
def cli() -> None:
    """nightfold: nightly batch analytics over HBase.

    A checkpointing master splits a day into chunks; shared-nothing workers fold
    them; MySQL is the truth and messages are only hints.
    """


cli.add_command(db)
cli.add_command(master)
cli.add_command(worker)
cli.add_command(seed_cmd)
cli.add_command(verify_cmd)
cli.add_command(status_cmd)
cli.add_command(cancel_cmd)
cli.add_command(retry_cmd)
cli.add_command(quarantine_cmd)
cli.add_command(gc_cmd)
cli.add_command(config)
cli.add_command(demo_cmd)
cli.add_command(web_cmd)


def main() -> None:
    cli(prog_name="nightfold")
