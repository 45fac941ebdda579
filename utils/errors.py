"""One exception type for mistakes a user can fix (bad path, bad file, bad flag).

CLIs catch it and print a single line instead of a traceback; library callers can catch it too.
"""
import json
import os
import sys
import time


class UserError(Exception):
    """A problem with the user's input, reported as one clear line."""


def cli_main(fn):
    """Run ``fn()`` and turn a UserError into ``error: ...`` on stderr with exit status 2.

    Under torchrun every process hits the same error: only rank 0 prints it; the others leave the message in
    their torchelastic error file (training.launch prints it when rank 0 did not fail) and exit quietly."""
    rank = os.environ.get("RANK", "0")
    try:
        return fn()
    except UserError as e:
        if rank == "0":
            print(f"error: {e}", file=sys.stderr)
        else:
            if os.environ.get("TORCHELASTIC_ERROR_FILE"):
                with open(os.environ["TORCHELASTIC_ERROR_FILE"], "w", encoding="utf-8") as f:   # torchelastic's layout
                    json.dump({"message": {"message": str(e), "extraInfo": {"py_callstack": "",
                                                                             "timestamp": str(int(time.time()))}}}, f)
            # let rank 0, which meets the same error at the same point, stop first: torchrun then ends this
            # process and reports rank 0's line only
            time.sleep(3.0)
        sys.exit(2)
    except KeyboardInterrupt:
        # training.launch reports the interruption once for all processes
        if rank == "0" and not os.environ.get("LAWDNET_LAUNCHER"):
            print("interrupted", file=sys.stderr)
        sys.exit(130)


def warn(message: str, notes=None) -> None:
    """Report suspicious input: appended to ``notes`` (a list the caller reports, e.g. in its statistics) or,
    without one, printed as one ``warning: ...`` line on stderr."""
    if notes is not None:
        if message not in notes:
            notes.append(message)
        return

    print(f"warning: {message}", file=sys.stderr, flush=True)
