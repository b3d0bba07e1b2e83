"""Object storage: the one place that turns a location (`s3://bucket/x`, `gs://...`, `memory://...`)
and its storage options into an fsspec filesystem.

Local paths and file:// URLs never come here: they stay on the local code path (mer_data/locations.py),
byte for byte what they were. A URL of an object store is opened with fsspec; its credentials and
endpoint come the way fsspec and s3fs users set them: the environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_PROFILE, ...; fsspec's FSSPEC_S3_* variables) and
`--storage-option key=value` on the command line (fsspec's `storage_options`; `client_kwargs.x=y`
sets a nested one, as s3fs's endpoint_url is given: `endpoint_url=http://127.0.0.1:9000`).

An unknown scheme, or a scheme whose fsspec package is missing (s3fs for s3://), is one clear line
(UnsupportedLocation), never a local folder with a colon in its name.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mer_data.locations import URL_SCHEME, UnsupportedLocation

# Object stores, by scheme: the fsspec package that serves each (what `pip install` needs).
STORAGE_SCHEMES = {
    "s3": "s3fs", "s3a": "s3fs",
    "gs": "gcsfs", "gcs": "gcsfs",
    "az": "adlfs", "abfs": "adlfs", "abfss": "adlfs",
    "memory": "fsspec",  # in-process, for tests
}
# Options given once on the command line (--storage-option), for every location this process opens.
_DEFAULT_OPTIONS: dict[str, Any] = {}


def storage_scheme(location: object) -> str | None:
    """The scheme of `location` when it names object storage; None for a local path or file:// URL.

    Raises UnsupportedLocation for any other URL (`ftp://`, `s3:/x` as a Path writes it, typos)."""
    text = os.fspath(location) if isinstance(location, (str, os.PathLike)) else str(location)
    match = URL_SCHEME.match(text)
    if match is None:
        return None
    scheme = match.group(1).lower()
    if scheme == "file":
        return None
    if scheme not in STORAGE_SCHEMES:
        known = ", ".join(f"{name}://" for name in sorted(STORAGE_SCHEMES))
        raise UnsupportedLocation(f"{text}: {scheme}:// is not a storage location mer-data reads or writes "
                                  f"(object stores: {known}; or a local folder / file:// URL)")
    if not text[match.end():].startswith("/"):
        raise UnsupportedLocation(f"{text}: not a URL (write {scheme}://bucket/path, with two slashes)")
    return scheme


def is_storage_url(location: object) -> bool:
    return storage_scheme(location) is not None


def parse_storage_options(pairs: Iterable[str]) -> dict[str, Any]:
    """`key=value` pairs as storage_options: values read as JSON where they parse (true, 3, {"a": 1}),
    else as text; `a.b=value` sets the nested option b of a (client_kwargs.endpoint_url=...)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--storage-option {pair!r}: expected key=value")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        *parents, leaf = key.strip().split(".")
        target = options
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                raise ValueError(f"--storage-option {pair!r}: {parent} is set both as a value and as a group")
        target[leaf] = value
    return options


def set_default_options(options: Mapping[str, Any]) -> None:
    """The storage options of this process (the CLI's --storage-option), used where none are passed."""
    _DEFAULT_OPTIONS.clear()
    _DEFAULT_OPTIONS.update(options)


def default_options() -> dict[str, Any]:
    return dict(_DEFAULT_OPTIONS)


def filesystem(url: str, options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) of the storage URL `url`; UnsupportedLocation (one line)
    for an unknown scheme or a missing fsspec package."""
    import fsspec

    scheme = storage_scheme(url)
    if scheme is None:
        raise UnsupportedLocation(f"{url}: a local location, not object storage")
    options = default_options() if options is None else dict(options)
    try:
        fs, path = fsspec.core.url_to_fs(str(url), **options)
    except ImportError as error:
        package = STORAGE_SCHEMES[scheme]
        extra = " (or pip install 'mer-data[s3]')" if package == "s3fs" else ""
        raise UnsupportedLocation(f"{url}: {scheme}:// needs the {package} package, which is not installed: "
                                  f"pip install {package}{extra}") from error
    return fs, path.rstrip("/")


def join(url: str, *names: str) -> str:
    """`url`/name/...: a child location of a storage URL or a local path, as text."""
    if is_storage_url(url):
        return "/".join([str(url).rstrip("/"), *names])
    return str(Path(url, *names))


def open_url(url: str, mode: str = "rb", options: Mapping[str, Any] | None = None, **open_options: Any):
    """An open file of the storage URL `url` (read streams fetch as they are read); `open_options` go
    to the filesystem's open (block_size, cache_type)."""
    fs, path = filesystem(url, options)
    return fs.open(path, mode, **open_options)


def upload_file(local: Path, fs: Any, path: str) -> None:
    """One local file as the object `path`: whole or not at all (a PUT, or a multipart upload that the
    store makes visible only when completed), never a partly written object."""
    fs.put_file(str(local), path)


def download_folder(fs: Any, path: str, local: Path) -> bool:
    """Every object under `path` into the local folder `local`; False when there is none."""
    found = fs.find(path)
    if not found:
        return False
    for remote in found:
        relative = remote[len(path):].lstrip("/")
        target = local / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(remote, str(target))
    return True


def parent_url(url: str) -> str:
    """The folder URL of a storage URL (`s3://b/x/train-000000.tar` -> `s3://b/x`)."""
    return str(url).rstrip("/").rsplit("/", 1)[0]


def read_bytes(url: str, options: Mapping[str, Any] | None = None) -> bytes | None:
    """The bytes of the object at `url`, or None when there is none."""
    fs, path = filesystem(url, options)
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        return None


def child_names(url: str, options: Mapping[str, Any] | None = None) -> list[str]:
    """The names of the objects directly in the folder `url` (none when it does not exist), sorted."""
    fs, path = filesystem(url, options)
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        return []
    return sorted(entry["name"].rstrip("/").rsplit("/", 1)[-1] for entry in entries if entry["type"] == "file")


def object_size(url: str, options: Mapping[str, Any] | None = None) -> int | None:
    fs, path = filesystem(url, options)
    try:
        return fs.size(path)
    except FileNotFoundError:
        return None


def upload_folder(local: Path, url: str, options: Mapping[str, Any] | None = None, last: Iterable[str] = ()) -> None:
    """Mirror the local folder `local` (recursively) at the storage URL `url`: objects there that `local`
    lacks are removed, every file is uploaded whole, and the relative names in `last` go last, in
    their order (a completion marker such as features.json)."""
    fs, path = filesystem(url, options)
    files = {str(p.relative_to(local).as_posix()): p for p in sorted(local.rglob("*")) if p.is_file()}
    existing = [found[len(path):].lstrip("/") for found in fs.find(path)] if fs.exists(path) else []
    last = [name for name in last if name in files]
    for name in last:  # the marker leaves first: the folder is not complete while it changes
        if name in existing:
            fs.rm_file(f"{path}/{name}")
    for name in existing:
        if name not in files and name not in last:
            fs.rm_file(f"{path}/{name}")
    for name, local_file in files.items():
        if name not in last:
            upload_file(local_file, fs, f"{path}/{name}")
    for name in last:
        upload_file(files[name], fs, f"{path}/{name}")
