"""Local folders: a plain path or a file:// URL, read as a Path.

A folder given as another URL (`s3://bucket/x`) must not become a local folder named `./s3:/bucket/x`:
where a command reads or writes object storage, the URL goes to mer_data/storage.py before it gets
here; everywhere else (run folders, reports, synthetic corpora) such a location is refused with a
clear message. `file://` URLs name local folders and are taken as such.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

# A URL scheme (`s3://`, and `s3:/` as a Path writes it); one letter is a Windows drive.
URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/")


class UnsupportedLocation(ValueError):
    """A location that is a URL: only local folders (or file:// URLs of them) are written."""


def local_folder(location: Path | str) -> Path:
    """`location` as a local folder: a plain path or a file:// URL; any other URL is refused."""
    text = os.fspath(location)
    scheme = URL_SCHEME.match(text)
    if scheme is None:
        return Path(text)
    if scheme.group(1).lower() == "file":
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise UnsupportedLocation(f"{text}: file:// URLs of other hosts are not supported; give a local folder")
        return Path(unquote(parts.path))
    raise UnsupportedLocation(f"{text}: {scheme.group(1)}:// output is not supported for this folder (it is written "
                              "on this machine; object storage: docs/at-scale.md); give a local folder and copy "
                              "the result")
