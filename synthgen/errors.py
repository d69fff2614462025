"""The one exception type for user mistakes.

Anything a user can fix (a bad path, a malformed input line, a bad option) is raised as `UserError`
with a message that fits on one line; the command-line edge turns it into `error: ...` and exit code 2.
Everything else is a bug and keeps its traceback.
"""


import errno

_DISK_ERRORS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS}


class UserError(Exception):
    """A mistake the user can fix; shown as one line, exit code 2."""


def run_cli(app) -> None:
    """Run a typer app so that a `UserError` prints one line and exits 2, never a traceback."""
    import sys

    try:
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        if exc.errno not in _DISK_ERRORS:
            raise
        # a full disk or a file too large, met by a library's own write (a model's weights, a tokenizer)
        print(f"error: cannot write {exc.filename or 'a file'}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished records are kept; run the same command again to resume", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # the parser's own usage errors arrive here in non-standalone mode
        # Matched by name: typer >= 0.29 raises its vendored copy of click's classes, not click's own.
        kinds = {cls.__name__ for cls in type(exc).__mro__}
        if "Abort" in kinds:
            sys.exit(130)
        if "ClickException" in kinds:
            exc.show()
            sys.exit(exc.exit_code)
        raise
