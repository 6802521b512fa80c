"""The ``mobattn`` command: one module per subcommand, loaded only when it runs.

Each command module parses its options, calls one library function and renders the
result (a rich table for people, ``--json`` for programs). User errors end in one red
line on stderr and exit code 2; warnings are one yellow line.
"""

from __future__ import annotations

import importlib
import sys
import warnings

import click

from mobattn import __version__
from mobattn.errors import MobattnError, MobattnWarning, is_out_of_memory

from .common import CONTEXT
from .console import print_error, print_warning

# name -> module under mobattn.cli that defines ``command`` (click's lazy-group recipe).
COMMANDS = {
    "list": "list_cmd",
    "info": "info",
    "export": "export",
    "validate": "validate",
    "inspect": "inspect_cmd",
    "bench": "bench",
    "sweep": "sweep",
    "merge": "merge",
    "machines": "machines_cmd",
    "eval": "eval_cmd",
    "fidelity": "fidelity_cmd",
    "table": "table",
    "report": "report",
    "cache": "cache_cmd",
    "node": "node",
    "fleet": "fleet_cmd",
}
_state = {"debug": False}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use, so ``mobattn --help`` and
    a quick ``mobattn list`` do not pay for torch.export, onnx or ExecuTorch."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        return importlib.import_module(f"{__name__}.{COMMANDS[name]}").command


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="mobattn")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def app(debug: bool) -> None:
    """Efficient attention for mobile vision: reference modules, exports and
    on-device-style benchmarks."""
    _state["debug"] = debug
    from mobattn.settings import check_settings

    check_settings()  # a bad environment variable is one line before anything runs


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, MobattnWarning):
        print_warning(str(message))
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; user errors become one line and code 2."""
    _state["debug"] = False
    warnings.showwarning = _show_warning
    try:
        result = app.main(args=argv, prog_name="mobattn", standalone_mode=False)
    except MobattnError as exc:
        if _state["debug"]:
            raise
        print_error(str(exc))
        return exc.exit_code
    except click.UsageError as exc:
        print_error(exc.format_message())
        return 2
    except (click.Abort, KeyboardInterrupt):
        print_error("interrupted")
        return 130
    except OSError as exc:  # a path the user gave that the system refuses: full, read-only, too long ...
        if _state["debug"]:
            raise
        print_error(f"{exc.strerror or type(exc).__name__}: {exc.filename or ''}".rstrip(": "))
        return 2
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        if _state["debug"]:
            raise
        print_error("not enough memory for this size on this machine; try a smaller one")
        return 2
    finally:
        warnings.showwarning = _default_showwarning
        _stop_unused_templates()
    return result if isinstance(result, int) else 0


def _stop_unused_templates() -> None:
    """A warm template a command started ahead and never used (it failed, or measured
    nothing) ends with the command, not with the process that ran it."""
    workers = sys.modules.get("mobattn.bench.workers")
    if workers is not None:
        workers.stop_prestarted()


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
