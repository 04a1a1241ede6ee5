"""The one exception type for mistakes a user can fix (bad paths, options, data)."""


class UserError(Exception):
    """A problem with the user's input, explained in one paragraph.

    Raised before any training starts; the CLI prints the message and exits
    non-zero instead of a traceback.
    """


def did_you_mean(given: str, valid) -> str:
    """' (did you mean 'x'?)' for the valid name closest to `given` (difflib), or ''."""
    import difflib

    close = difflib.get_close_matches(given, [str(v) for v in valid], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
