"""The one exception type for problems a user can cause and fix (bad config, bad file, bad data)."""


class SegPipelineError(Exception):
    """A user-fixable problem. The message names the file, row, column or key and says what to do."""
