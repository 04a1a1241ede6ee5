"""Studies in object storage: `--storage s3://BUCKET/PREFIX` (or `gs://`, `file://`).

Ray Tune writes the trials there itself, through a pyarrow filesystem. The study's own
files (study.json, summary.csv, best/, ...) are written in a local mirror of the study
and copied up; reading a stored study (to resume it, or for analysis.report) copies it
down first. Credentials and endpoints come from the usual environment (AWS_*, e.g.
AWS_ENDPOINT_URL for an S3-compatible server; GOOGLE_APPLICATION_CREDENTIALS).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import urllib.parse
from collections.abc import Iterator

from trainable.errors import UserError

MIRRORS = os.path.join(os.path.expanduser("~"), ".cache", "face-age")  # a stored study's local copy, trunk cache


def is_uri(path: str | None) -> bool:
    return path is not None and "://" in str(path)


def join(root: str, name: str) -> str:
    """A study's location under --storage: a path, or a URI (`name` joins its path, before a
    query such as ?region=... or ?endpoint_override=...)."""
    if not is_uri(root):
        return os.path.join(root, name)
    base, mark, query = root.partition("?")
    return f"{base.rstrip('/')}/{name}{mark}{query}"


def split(location: str) -> tuple[str, str]:
    """(parent, name) of a study's location, join's inverse (a URI's query stays with the parent)."""
    base, mark, query = location.partition("?") if is_uri(location) else (location, "", "")
    parent, _, name = base.rstrip("/").rpartition("/")
    return parent + mark + query, name


def mirror(uri: str) -> str:
    """The local folder that mirrors the stored study at `uri`: named by a hash of the whole
    URI (scheme, bucket, path; credentials left out), after a readable part of it, so that
    s3://lab/x_y, gs://lab_x/y and file:///lab/x/y never share one."""
    clean = redact_argument(uri.rstrip("/")).replace(f"{SECRET}@", "")  # one mirror whoever's credentials
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", clean.split("://", 1)[1].strip("/"))[-80:]
    return os.path.join(MIRRORS, "studies", f"{readable}-{hashlib.sha256(clean.encode()).hexdigest()[:16]}")


SECRET = "REDACTED"
SECRET_QUERY = re.compile(r"key|secret|token|pass|pwd|sig|credential|auth", re.IGNORECASE)
AUTHORITY_END = re.compile(r"[/?#]")  # RFC 3986: the authority ends at the first of these
NOT_IN_A_PATH = re.compile(r'[\s"<>\\^`{|}#]')  # no URI holds these raw after its authority ('#': a fragment)
URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
SHORTEST_KNOWN = 8  # a known secret shorter than this is too common a string to replace in free text
_known: set[str] = set()  # secrets moved to the environment here: hidden wherever they appear


def redact(text: str) -> str:
    """`text` with the credentials of any URI in it (user:password@, and query values
    named like keys, secrets, tokens, passwords or signatures) replaced by REDACTED, and every
    secret moved to the environment here (credentials_to_environment), in any form, wherever it
    appears: what records, names and printed lines may hold. Other text is returned as is."""
    text = re.sub(URI.pattern + r"[^\s'\"]+", lambda m: _redact_uri(m.group(0)), text)
    for secret in sorted(_known, key=len, reverse=True):
        text = text.replace(secret, SECRET)
    return text


def redact_argument(arg: str) -> str:
    """One command-line argument (or option value) redacted with the whole argument (after an
    `--option=`) read as one URI: a secret holding a space or a quote is hidden whole."""
    option, eq, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
    if not eq:
        option, value = "", arg
    return redact(option + eq + (_redact_uri(value) if URI.match(value) else value))


def _authority(rest: str) -> str:
    return AUTHORITY_END.split(rest, 1)[0]


def _unescaped_userinfo(rest: str) -> bool:
    """`rest` (a URI after '://') reads as user:secret@host only if the secret's '/', '?', '#' or
    '@' were escaped: its authority is 'user:...' with no '@' and a port that is no number, and an
    '@' comes later; or what follows the authority holds a character no URI holds raw (a space, a
    quote, '#'...) before an '@' (a secret's tail)."""
    authority = _authority(rest)
    _, colon, port = authority.partition(":")
    after = rest[len(authority) :]
    if "@" not in authority:
        return bool(colon) and not port.isdigit() and "@" in after
    odd = NOT_IN_A_PATH.search(after)
    return odd is not None and "@" in after[odd.start() :]


def _hidden_end(rest: str) -> int:
    """Where the part of `rest` to hide ends (the '@' after it), or -1: the authority's userinfo,
    to its last '@'; for a userinfo with an unescaped '/', '?', '#' or '@', to the URI's last '@'."""
    if _unescaped_userinfo(rest):
        return rest.rfind("@")
    authority = _authority(rest)
    return authority.rfind("@") if "@" in authority else -1


def _redact_uri(uri: str) -> str:
    scheme, rest = uri.split("://", 1)
    at = _hidden_end(rest)
    if at > 0:
        uri = f"{scheme}://{SECRET}@{rest[at + 1 :]}"
    parts = urllib.parse.urlsplit(uri)
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    hidden = [(k, SECRET if SECRET_QUERY.search(k) else v) for k, v in pairs]
    query = urllib.parse.urlencode(hidden, safe="/:") if hidden != pairs else parts.query
    return urllib.parse.urlunsplit(parts._replace(query=query)) if query != parts.query else uri


# Where each library reads a URI's credentials from the environment instead.
CREDENTIAL_VARIABLES = {
    "s3": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    "http": ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"),
    "https": ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"),
}


def credentials_for(uri: str) -> tuple[str, ...]:
    """The environment variables that hold a URI's credentials for its library (() if none)."""
    return CREDENTIAL_VARIABLES.get(uri.split("://", 1)[0].lower(), ()) if is_uri(uri) else ()


def credentials_to_environment(uri: str | None, option: str) -> str | None:
    """`uri` without its credentials, which move into this process's environment, where
    pyarrow (s3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and MLflow (http(s):
    MLFLOW_TRACKING_USERNAME, _PASSWORD) read them: nothing after this (Tune's tuner.pkl and
    experiment state, Ray's files, MLflow's and pyarrow's error texts) can hold them, and redact
    hides them wherever they appear. Ray processes started here inherit the environment; the
    nodes of a cluster joined with --address need their own. The userinfo is RFC 3986's: the
    authority's, before its '@' (an '@' in the path is the path's); percent-escapes are decoded.
    A userinfo whose '/', '?', '#' or '@' are not escaped, a secret in the query, or userinfo on
    another scheme is refused, naming what to set."""
    if not is_uri(uri):
        return uri
    scheme, rest = uri.split("://", 1)
    parts = urllib.parse.urlsplit(redact_argument(uri))
    secret_keys = [k for k, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if SECRET_QUERY.search(k)]
    variables = credentials_for(uri) or None
    if secret_keys:
        where = " or ".join(variables) if variables else "the environment variables its library reads"
        raise UserError(
            f"{option} {redact_argument(uri)}: a secret in the query ({', '.join(secret_keys)}) would be recorded "
            f"by Ray and printed in errors; set {where} (or MLFLOW_TRACKING_TOKEN for a token) instead."
        )
    authority = _authority(rest)
    if _unescaped_userinfo(rest) or authority.count("@") > 1:
        raise UserError(
            f"{option} {redact_argument(uri)}: the credentials hold an unescaped '/', '?', '#' or '@', so the "
            "bucket and path cannot be told from them; percent-encode those characters in the secret (%2F, "
            f"%3F, %23, %40) or set {' and '.join(variables or ('the variables its library reads',))} instead."
        )
    if "@" not in authority:
        return uri
    if variables is None:
        raise UserError(
            f"{option} {redact_argument(uri)}: credentials in a {scheme}:// URI would be recorded by Ray; give them "
            "through the environment variables its library reads instead."
        )
    userinfo, _, host = authority.partition("@")
    for name, value in zip(variables, userinfo.partition(":")[::2], strict=True):
        if value:
            os.environ[name] = urllib.parse.unquote(value)
            _known.update(v for v in (value, os.environ[name]) if len(v) >= SHORTEST_KNOWN)
    return f"{scheme}://{rest[len(userinfo) + 1 :]}"


def _filesystem(location: str):
    """(filesystem, path) of a URI or a local path."""
    import pyarrow.fs as pafs

    uri = location if is_uri(location) else os.path.abspath(location)
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as err:  # unknown scheme, no credentials, a bucket that is not there
        raise UserError(f"{redact(location)}: cannot open this storage location ({redact(str(err))}).") from None


@contextlib.contextmanager
def reaching(location: str) -> Iterator[None]:
    """A stored location's failure (an endpoint that does not answer, access refused) as one
    paragraph, its text redacted; a local path's OSError (a full disk) as it is."""
    try:
        yield
    except OSError as err:
        if not is_uri(location):
            raise
        raise UserError(f"{redact(location)}: cannot reach this storage location ({redact(str(err))}).") from None


def exists(location: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = _filesystem(location)
    with reaching(location):
        return fs.get_file_info(path).type != pafs.FileType.NotFound


def download(uri: str, local: str) -> str:
    """Copy the stored study (or file) at `uri` into `local`; returns `local`."""
    import pyarrow.fs as pafs

    fs, path = _filesystem(uri)
    with reaching(uri):
        kind = fs.get_file_info(path).type
        if kind == pafs.FileType.NotFound:
            raise UserError(f"{redact(uri)}: nothing is stored there.")
        if kind == pafs.FileType.File:
            os.makedirs(os.path.dirname(local), exist_ok=True)
        pafs.copy_files(path, local, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return local


def upload(local: str, uri: str) -> None:
    """Copy the local file or folder `local` to `uri` (files there with the same names are replaced)."""
    import pyarrow.fs as pafs

    fs, path = _filesystem(uri)
    with reaching(uri):
        pafs.copy_files(local, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def listdir(location: str) -> list[str]:
    """The names in a folder: a local path or a URI."""
    import pyarrow.fs as pafs

    fs, path = _filesystem(location)
    with reaching(location):
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return [os.path.basename(info.path) for info in infos]


def move(location: str, to: str) -> None:
    """Rename a file or folder within one storage location (a local path or a URI)."""
    fs, path = _filesystem(location)
    with reaching(location):
        fs.move(path, _filesystem(to)[1])


def read_bytes(location: str) -> bytes:
    fs, path = _filesystem(location)
    with reaching(location), fs.open_input_stream(path) as f:
        return f.readall()
