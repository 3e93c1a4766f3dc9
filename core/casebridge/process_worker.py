"""What a parse worker process runs (``python -m casebridge.process_worker``, started by
:mod:`casebridge.processes`): read one pickled call at a time from standard input, run it,
write its pickled outcome to standard output. Each message is a decimal length, a newline,
then that many bytes. The worker ends when its input ends (the runner closed it, or died).
"""

from __future__ import annotations

import pickle
import sys
from typing import BinaryIO

__all__ = ["serve"]

_MAX_HEADER = 20


def serve(calls: BinaryIO, outcomes: BinaryIO) -> None:
    while header := calls.readline(_MAX_HEADER):
        call = calls.read(int(header))
        try:
            fn, args = pickle.loads(call)  # noqa: S301 -- from the runner that started us
            outcome: tuple[bool, object] = (True, fn(*args))
        except Exception as exc:
            outcome = (False, exc)
        try:
            data = pickle.dumps(outcome, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # a result (or an exception) pickle cannot carry
            data = pickle.dumps((False, RuntimeError(f"cannot return {outcome[1]!r}: {exc}")))
        outcomes.write(b"%d\n" % len(data))
        outcomes.write(data)
        outcomes.flush()


if __name__ == "__main__":
    channel = sys.stdout.buffer
    sys.stdout = sys.stderr  # a print() in called code must not corrupt the channel
    serve(sys.stdin.buffer, channel)
