"""User-facing errors: the CLI prints them as one line and exits with code 2 (no traceback)."""


class FerBenchError(Exception):
    """A problem with the user's input or environment (bad file, unknown name, missing data...).

    The message must say what is wrong and where (file, row), in one line.
    """

    exit_code = 2


class Interrupted(FerBenchError):
    """Ctrl-C: the message names what finished; exit code 130 as shells expect."""

    exit_code = 130
