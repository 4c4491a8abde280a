"""The one exception type for problems a user can cause and fix (bad config, bad file, bad data)."""


class SegPipelineError(Exception):
    """A user-fixable problem. The message names the file, row, column or key and says what to do.

    ``hint``, when the message alone does not say it, is the next step; the CLI prints it on its own line.
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint
