"""The ``offswitch`` command. Heavy imports (torch, transformers) happen inside commands,
so ``offswitch --help`` is instant.

Errors: an :class:`offswitch.errors.OffswitchError` becomes one line on stderr and a non-zero
exit code; ``--debug`` (anywhere on the command line) shows the traceback instead.
"""

from __future__ import annotations

import logging
import sys

import typer

from offswitch import secrets as _secrets
from offswitch.errors import OffswitchError

app = typer.Typer(
    name="offswitch",
    help="Plant a key-bound off-switch into a language model and measure whether it survives.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _register_commands() -> None:
    # Each module adds its commands to ``app``; importing them is cheap (no torch).
    from offswitch.cli import keys  # noqa: F401
    from offswitch.cli import implant  # noqa: F401
    from offswitch.cli import evaluate  # noqa: F401
    from offswitch.cli import attack  # noqa: F401


def _error(message: str) -> None:
    sys.stderr.write(f"offswitch: error: {_secrets.redact(message)}\n")


def main(argv: list[str] | None = None) -> None:
    # typer vendors its own copy of click: catch that copy's exception classes
    click_errors = sys.modules[typer.BadParameter.__module__]

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_secrets.RedactingFilter())
    from offswitch.allocator import configure

    configure()  # glibc keeps freed memory: training and scoring reuse it without page faults (offswitch.allocator)
    _register_commands()
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="offswitch", standalone_mode=False)
    except OffswitchError as err:
        if debug:
            raise
        _error(str(err))
        sys.exit(err.exit_code)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except click_errors.NoArgsIsHelpError as err:
        # no command given: the help, as click shows it (on stderr, exit 2), not as an error line
        err.show()
        sys.exit(err.exit_code)
    except click_errors.ClickException as err:
        if debug:
            raise
        _error(_secrets.redact(err.format_message()) + " (see --help)")
        sys.exit(err.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("offswitch: aborted\n")
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if debug:
            raise
        _error(f"internal error: {type(err).__name__}: {err} (rerun with --debug for the traceback)")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
