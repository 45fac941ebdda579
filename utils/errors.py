"""One exception type for mistakes a user can fix (bad path, bad file, bad flag).

CLIs catch it and print a single line instead of a traceback; library callers can catch it too.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one clear line."""


def cli_main(fn):
    """Run ``fn()`` and turn a UserError into ``error: ...`` on stderr with exit status 2."""
    import sys

    try:
        return fn()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def warn(message: str, notes=None) -> None:
    """Report suspicious input: appended to ``notes`` (a list the caller reports, e.g. in its statistics) or,
    without one, printed as one ``warning: ...`` line on stderr."""
    if notes is not None:
        if message not in notes:
            notes.append(message)
        return
    import sys

    print(f"warning: {message}", file=sys.stderr, flush=True)
