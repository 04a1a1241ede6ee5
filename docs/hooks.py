"""MkDocs hook: the options page's table, generated from the dataclasses the parser is built from."""

MARKER = "<!-- options -->"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    from study.spec import StudySpec
    from trainable.cli_options import markdown_table
    from trainable.data.dataset_options import DataOptions

    return markdown.replace(MARKER, markdown_table(DataOptions, StudySpec))
