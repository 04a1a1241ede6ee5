"""The one exception type for mistakes a user can fix (bad paths, options, data), and the
escaping that keeps what a user gave (a path, a name) from driving a terminal."""

import re


class UserError(Exception):
    """A problem with the user's input, explained in one paragraph.

    Raised before any training starts; the CLI prints the message and exits
    non-zero instead of a traceback.
    """


# C0 and C1 controls (ESC drives a terminal), DEL, the Unicode line and paragraph
# separators and the bidirectional overrides (they reorder what a reader sees).
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """`text` safe to print, write and record on one line, and unable to drive a terminal:
    bytes that are not UTF-8 (a file name's, kept by Python as surrogates) escaped as \\xNN,
    line breaks as \\n, other controls and separators (UNSAFE) as \\xNN or \\uNNNN."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no byte made
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return UNSAFE.sub(lambda m: NAMED.get(m[0]) or ascii(m[0])[1:-1], text)


def did_you_mean(given: str, valid) -> str:
    """' (did you mean 'x'?)' for the valid name closest to `given` (difflib), or ''."""
    import difflib

    close = difflib.get_close_matches(given, [str(v) for v in valid], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def refuse_unprintable(options: dict, skip: tuple[str, ...] = ()) -> None:
    """Refuse an option whose text holds a control character or a line or direction separator
    (trainable.data.problems.UNSAFE): paths and names are printed to terminals and written to
    logs and records, where an escape sequence would drive the terminal or forge a line."""
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
    other (usage, the reason, exit 2): see refuse_unprintable. An option it does not know is one
    line naming the closest it does ("did you mean '--seeds'?"), not the whole usage."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        import re

        known = sorted(set(re.findall(r"(?<![\w-])--[\w-]+", parser.format_help())))
        given = unknown[0].split("=")[0]
        hint = did_you_mean(given, known) if given.startswith("--") else ""
        parser.exit(
            2, f"{parser.prog}: error: unrecognized argument {unknown[0]}{hint}; {parser.prog} --help lists them\n"
        )
    try:
        refuse_unprintable(vars(args), skip)
    except UserError as err:
        parser.error(str(err))
    return args
