"""The one exception type for problems a user can cause and fix (bad config, bad file, bad data)."""


class SegPipelineError(Exception):
    """A user-fixable problem. The message names the file, row, column or key and says what to do.

    ``hint``, when the message alone does not say it, is the next step; the CLI prints it on its own line.
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def first_line(exc: BaseException) -> str:
    """The first line of an error's message for people to read (passwords and known secrets masked: driver
    errors may quote a DSN), or its type when it has no message."""
    from seg_pipeline.redact import redact

    text = str(exc).strip()
    return redact(text.splitlines()[0]) if text else type(exc).__name__
