"""torchrun for train_sequence_distributed.sh, reporting in one line.

    python -m training.launch [torchrun flags] train_sequence_distributed.py [training flags]

Runs torch.distributed.run (the same elastic agent, rendezvous and process management as ``torchrun``) but
turns its failure reports into the project's one-line messages:

* a training process that stopped on a user error (exit status 2) has printed its ``error: ...`` line (rank 0
  does; the others stay quiet, see utils.errors.cli_main): nothing is added, where torchrun prints a 30-40 line
  ``ChildFailedError`` traceback; an error seen only by another rank is printed from that rank's error file;
* a busy ``--master_port`` is ``error: MASTER_PORT N is already in use ...`` with a free port to use instead;
* Ctrl-C is one ``interrupted`` line instead of a ``SignalException`` traceback;
* a process that crashed (a bug: its traceback is above) gets one line naming its rank and exit status.

Exit status: the failing process's (2 for user errors), 130 after Ctrl-C.
"""
import json
import logging
import os
import socket
import sys

# Lazy imports below: torch.distributed loads only when a launch starts (train_sequence_distributed.py answers
# --help and option errors without torch).

USER_ERROR = 2
INTERRUPTED = 130


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _error_file_message(path: str) -> str:
    """The message a training process wrote to its torchelastic error file ("" when there is none)."""
    try:
        with open(path, encoding="utf-8") as f:
            return str(json.load(f)["message"]["message"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _report_failure(err) -> int:
    """One line (or none) for a ChildFailedError; returns the exit status to use."""
    failures = err.failures                                  # {global rank: ProcessFailure}
    rank0 = failures.get(0)
    first_rank, first = err.get_first_failure()
    if any(f.exitcode == USER_ERROR for f in failures.values()):
        if rank0 is not None and rank0.exitcode == USER_ERROR:
            return USER_ERROR                                 # rank 0 printed the error line itself
        rank, f = next((r, f) for r, f in sorted(failures.items()) if f.exitcode == USER_ERROR)
        msg = _error_file_message(f.error_file) if f.error_file else ""
        print(f"error: (training process rank {rank}) {msg.removeprefix('error: ') or 'stopped on a user error'}",
              file=sys.stderr)
        return USER_ERROR
    if first.exitcode == -2 or first.exitcode == INTERRUPTED:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    code = first.exitcode
    how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
    print(f"error: training process rank {first_rank} {how} (its output is above; rerun the same command to "
          "resume from the last checkpoint)", file=sys.stderr)
    return code if 0 < code < 256 else 1


def _port_in_use(exc) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return "EADDRINUSE" in text or "address already in use" in text.lower()


def main(argv=None) -> int:
    os.environ.setdefault("LOGLEVEL", "CRITICAL")           # the agent's failure logs: replaced by one line
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    os.environ.setdefault("OMP_NUM_THREADS", "1")            # torchrun would print a banner to set it
    os.environ["LAWDNET_LAUNCHER"] = "1"                     # the processes leave the Ctrl-C report to us
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    args = torchrun.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        torchrun.run(args)
        return 0
    except ChildFailedError as e:
        return _report_failure(e)
    except (KeyboardInterrupt, SignalException):
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as e:          # rendezvous / store failures of the agent itself
        if _port_in_use(e):
            print(f"error: MASTER_PORT {args.master_port} is already in use on {args.master_addr} (another "
                  f"training run?): choose a free port, e.g. MASTER_PORT={free_port()}", file=sys.stderr)
            return USER_ERROR
        raise


if __name__ == "__main__":
    sys.exit(main())
