"""The one exception type for mistakes a user can fix (bad paths, options, data)."""


class UserError(Exception):
    """A problem with the user's input, explained in one paragraph.

    Raised before any training starts; the CLI prints the message and exits
    non-zero instead of a traceback.
    """
