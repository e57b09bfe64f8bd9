"""The command line: parse, call one library function, print its Answer, exit with its status.

argparse rather than click: it is the standard library (nothing more to pin, audit or
keep compatible with), and with COMMANDS naming each command's function as text, a
command's modules are imported only when it runs, so `reminder --help` answers at once.
The grammar (every option and its help) is declared in `commands.arguments`; what a command does
is in `commands.checking` (read-only), `commands.previewing` (preview, send-test,
simulate), `commands.changing` (ledger, suppressions, bounces) and `service.worker` (run),
which tests call without this module.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Sequence

from .commands.arguments import parser
from .core.answer import CLOSED_PIPE, FAILED, INTERRUPTED, USAGE_ERROR, Answer
from .core.errors import InputError, ReminderError, UsageError
from .service.logs import printable, setup_logging

__all__ = ["COMMANDS", "main", "parser"]

# Each command's library function, as module:function. It takes the config file and the
# command's options by name, and returns an Answer.
COMMANDS = {
    "init": "commands.new_cycle:init",
    "check": "commands.checking:check",
    "plan": "commands.checking:plan",
    "registrants": "commands.checking:registrants",
    "history": "commands.checking:history",
    "status": "commands.checking:status",
    "suppressed": "commands.checking:suppressed",
    "preview": "commands.previewing:preview",
    "send-test": "commands.previewing:send_test",
    "simulate": "commands.previewing:simulate",
    "ledger migrate": "commands.changing:migrate_ledger",
    "ledger copy": "commands.changing:copy_ledger",
    "suppress": "commands.changing:suppress",
    "unsuppress": "commands.changing:unsuppress",
    "bounces": "commands.changing:bounces",
    "run": "service.worker:serve",
}
# Options every command accepts, for the command line itself.
_OWN = ("config", "log_format", "log_level", "command", "ledger_command")


def err(text: str) -> None:
    print(printable(text), file=sys.stderr)


def show(answer: Answer) -> None:
    """Results on stdout, notes on stderr, in order; nothing from an export reaches the
    terminal as a control code."""
    for to_stderr, text in answer.lines:
        print(printable(text), file=sys.stderr if to_stderr else sys.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from .inputs.config import config_path

    options = vars(args)
    options.setdefault("utc", False)
    setup_logging(
        options.get("log_format", "human"), options.get("log_level", "info"), utc=args.utc
    )
    path = config_path(options.get("config"))
    name = " ".join(filter(None, (args.command, options.get("ledger_command"))))
    module, function = COMMANDS[name].split(":")
    try:
        command = getattr(importlib.import_module(f".{module}", __package__), function)
        # The options this command's parser declared, plus --utc where the function shows times.
        wanted = inspect.signature(command).parameters
        given = {k: v for k, v in options.items() if k in wanted and k not in _OWN}
        answer: Answer = command(path, **given)
        show(answer)
        sys.stdout.flush()  # a closed pipe shows here, not as a complaint at exit
        return answer.status
    except UsageError as exc:
        err(f"reminder {args.command}: {exc}")
        return USAGE_ERROR
    except InputError as exc:
        err(f"reminder {args.command}: cannot go on:")
        for problem in exc.problems:
            err(f"  {problem}")
        return FAILED
    except ReminderError as exc:
        err(f"reminder {args.command}: {exc}")
        return FAILED
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:
        # `reminder plan | head`: the reader has what it wanted. Python would complain
        # again when flushing stdout at exit; point it at nothing first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return CLOSED_PIPE
