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


def refuse_unprintable(options: dict, skip: tuple[str, ...] = ()) -> None:
    """Refuse an option whose text holds a control character or a line or direction separator
    (trainable.data.problems.UNSAFE): paths and names are printed to terminals and written to
    logs and records, where an escape sequence would drive the terminal or forge a line."""
    from trainable.data.problems import UNSAFE, printable

    for key, value in options.items():
        texts = value if isinstance(value, list | tuple) else [value]
        for text in texts:
            if key not in skip and isinstance(text, str) and UNSAFE.search(text):
                option = "--" + key.replace("_", "-")
                raise UserError(
                    f"{option} {printable(text)!r}: holds a control character or a line or direction separator "
                    "(shown escaped); paths and names are printed and recorded, and must hold none."
                )


def parse_printable(parser, argv: list[str] | None, skip: tuple[str, ...] = ()):
    """parser.parse_args(argv), with an unprintable option refused as argparse refuses any
    other (usage, the reason, exit 2): see refuse_unprintable."""
    args = parser.parse_args(argv)
    try:
        refuse_unprintable(vars(args), skip)
    except UserError as err:
        parser.error(str(err))
    return args
