"""What the Snakefile needs of Snakemake's command line before the DAG is built.

Snakemake hands a workflow its targets only after parsing the Snakefile, and an error raised
while it builds the DAG (in an input function) reaches the user wrapped in an
InputFunctionException with a traceback, or not at all when another rule could make the file.
So the Snakefile reads the parsed command line itself, to refuse a target that cannot be made
in one sentence before the DAG, and to say on a dry run what only a real run checks.

Imports neither torch nor Snakemake (planning: tests/test_spec_layer.py).
"""

from __future__ import annotations

import inspect
import signal

# Modes that build no DAG of targets (or run one job of an existing DAG): nothing to check.
NO_TARGETS = ("lint", "list_rules", "list_target_rules", "print_compilation", "unlock", "cleanup_metadata",
              "target_jobs", "containerize", "list_changes", "cleanup_shadow")


def command_line():
    """Snakemake's parsed command line (an argparse Namespace: .targets, .dryrun, ...) when
    `snakemake` (snakemake.cli.main, also called in-process) is reading the Snakefile to build
    the DAG of its targets; None otherwise (a job's own process, --lint, --unlock, the API)."""
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code.co_name == "args_to_api" and frame.f_globals.get("__name__") == "snakemake.cli":
            args = frame.f_locals.get("args")
            if args is None or any(getattr(args, mode, None) for mode in NO_TARGETS):
                return None
            return args
        frame = frame.f_back
    return None


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def interrupt_at_once() -> None:
    """Ctrl-C raises KeyboardInterrupt at once. Snakemake builds the DAG in asyncio, whose own
    SIGINT handler only cancels the running task: the cancel takes effect at the next point the
    DAG code waits, which for a DAG of 12,000 jobs came after all jobs were made (20 s and more).
    asyncio installs its handler only over Python's default one, so this one stays."""
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _interrupt)
    except ValueError:  # not the main thread: leave signals alone
        pass


def restore_interrupt() -> None:
    """Snakemake's own Ctrl-C handling again (jobs are about to run: it stops them cleanly)."""
    try:
        if signal.getsignal(signal.SIGINT) is _interrupt:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:
        pass
