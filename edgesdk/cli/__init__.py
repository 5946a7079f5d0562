"""The ``edgesdk`` command: a click group with one module per verb.

Each verb module defines a click command named ``command``; verbs are imported only when
used, so ``edgesdk devices`` on a device never imports torch. Library errors
(``edgesdk.errors``) become one-line messages with the exit codes of DESIGN.md.
"""
from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import warnings
from typing import Any

import click

from edgesdk import interrupts
from edgesdk._version import __version__
from edgesdk.errors import BundleWarning, EdgeSDKError

VERBS = ("export", "run", "validate", "inspect", "profile", "devices", "models", "demo", "wrap", "sweep", "map",
         "lut", "search")


class EdgeSDKClickError(click.ClickException):
    """A library error shown as ``Error: <sentence>`` with its own exit code."""

    def __init__(self, error: EdgeSDKError):
        super().__init__(str(error))
        self.exit_code = error.exit_code


class VerbGroup(click.Group):
    """Imports ``edgesdk.cli.<verb>`` lazily and turns library errors into exit codes."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [verb for verb in VERBS if self._load(verb) is not None]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._load(name) if name in VERBS else None

    @staticmethod
    def _load(verb: str) -> click.Command | None:
        module_name = f"edgesdk.cli.{verb}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:
                return None  # a verb whose issue has not landed yet
            raise
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Click cuts each verb's first sentence to the terminal's width with "..."; show it whole
        # (wrapped), since it is the only place a newcomer reads what each verb is for.
        rows = [(verb, command.get_short_help_str(limit=400)) for verb in self.list_commands(ctx)
                if (command := self.get_command(ctx, verb)) is not None and not command.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgeSDKError as error:
            raise EdgeSDKClickError(error) from None
        except KeyboardInterrupt as error:
            signum = getattr(error, "signum", signal.SIGINT)
            click.echo(f"Interrupted by {signal.Signals(signum).name}. (An export in progress leaves no partial "
                       "bundle behind.)", err=True)
            ctx.exit(128 + signum)


EXIT_CODES = """\b
Exit codes:
  0    success
  1    unexpected internal error (EDGESDK_DEBUG=1 shows the traceback)
  2    usage error: a bad option, input file, shape or checkpoint
  3    conversion failed (the message names the op or module)
  4    validation failed (files kept, manifest marks them invalid)
  5    backend or device unavailable
  6    a measurement was asked for explicitly and cannot be made
  130, 143, 129  interrupted by SIGINT, SIGTERM, SIGHUP (nothing half-written is left)

Guides: docs/own-model.md (your own model to a device), docs/<family>.md."""


@click.group(cls=VerbGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES)
@click.version_option(__version__, prog_name="edgesdk")
@click.option("-v", "--verbose", is_flag=True,
              help="Show converter output and edgesdk's own progress log (EDGESDK_DEBUG=1: every library's "
                   "debug log, and tracebacks).")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Export efficient transformers to ONNX and TFLite, prove them, run them on edge devices."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    # The verbs print these sentences as their first lines (cli/common.print_bundle_notes).
    warnings.filterwarnings("ignore", category=BundleWarning)
    debug = bool(os.environ.get("EDGESDK_DEBUG"))
    # -v is for a person: edgesdk's INFO lines. Every library's DEBUG (thousands of lines from
    # torch and the converters) only behind EDGESDK_DEBUG.
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if verbose and not debug:
        logging.getLogger("edgesdk").setLevel(logging.INFO)


INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: Any) -> None:
    """Turn the signal into Interrupted, and remember it in case a converter swallows it."""
    interrupts.request(signum)
    raise interrupts.Interrupted(signum)


def main() -> None:
    """Console-script entry point."""
    for signum in INTERRUPT_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup and friends keep their choice
            signal.signal(signum, _interrupt)
    if os.environ.get("EDGESDK_DEBUG"):
        cli()  # tracebacks included
        return
    try:
        # Not click's standalone mode: it turns an interrupt that lands outside a verb (while
        # the options are parsed) into "Aborted!" and exit 1, where DESIGN.md says 128 + signal.
        result = cli(standalone_mode=False)
    except click.exceptions.Abort as abort:
        interrupt = abort.__cause__ or abort.__context__
        if not isinstance(interrupt, KeyboardInterrupt):
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(_report_interrupt(interrupt))
    except KeyboardInterrupt as interrupt:
        sys.exit(_report_interrupt(interrupt))
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except Exception as error:  # the last line of defence: one sentence, exit 1
        click.echo(f"Internal error: {type(error).__name__}: {error} (set EDGESDK_DEBUG=1 for a traceback)", err=True)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)  # ctx.exit(code) comes back as the code


def _report_interrupt(interrupt: KeyboardInterrupt) -> int:
    """Say which signal stopped the command; its exit code, 128 + the signal number."""
    signum = getattr(interrupt, "signum", signal.SIGINT)
    click.echo(f"Interrupted by {signal.Signals(signum).name}.", err=True)
    return 128 + signum
