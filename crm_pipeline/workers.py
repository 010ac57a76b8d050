"""What a user is told when a worker process of a per-customer pool dies mid-task."""

import re
from collections.abc import Iterator
from contextlib import contextmanager

from joblib.externals.loky.process_executor import TerminatedWorkerError

EXIT_CODES = re.compile(r"exit codes of the workers are (\{[^}]*\})")


class WorkerDiedError(RuntimeError):
    """A worker process died (killed, out of memory, crashed) before its task finished."""


@contextmanager
def worker_deaths(doing: str, kept: str) -> Iterator[None]:
    """Turn joblib/loky's ``TerminatedWorkerError`` into a ``WorkerDiedError`` that says what was
    being done, which results are kept, and what to do about it."""
    try:
        yield
    except TerminatedWorkerError as exc:
        codes = EXIT_CODES.search(str(exc))
        raise WorkerDiedError(
            f"a worker process died while {doing} (exit codes {codes.group(1) if codes else 'unknown'}): "
            f"{kept}. Re-run to finish; if it happens again, the OS may be killing workers for memory: "
            "lower `workers`."
        ) from exc
