"""Turning any exception into the CLI's one-line message."""
from mae_core.errors import MaeBenchError
from results.record import ResultError

# Input problems: the message alone (our models and heads raise ValueError on settings they cannot take). Anything
# else, e.g. a KeyError naming a recipe key a runner expected, is shown with its type so it does not read as advice.
USER_ERRORS = (MaeBenchError, ResultError, FileNotFoundError, NotADirectoryError, PermissionError, ValueError)


def describe(e: BaseException) -> str:
    """One line: the message alone for input problems, the exception type too for anything else."""
    msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    if "Original Traceback" in msg:  # re-raised from a DataLoader worker: keep the worker's own message
        last = [line for line in msg.splitlines() if line.strip()][-1]
        kind, sep, text = last.partition(": ")  # "mae_core.errors.MaeBenchError: cannot decode image ..."
        msg = text if sep and kind.endswith(("Error", "Exception")) else last
    msg = " ".join(msg.split()) or type(e).__name__
    if isinstance(e, USER_ERRORS):
        return msg
    return f"{type(e).__name__}: {msg} (run with --debug for the traceback)"


class Terminated(KeyboardInterrupt):
    """SIGTERM, which cluster schedulers send before killing a job: unwound like Ctrl-C."""
