"""Environment faults: the machine failed, not the data.

A conversion keeps two kinds of failure apart:

- a data error: the utterance itself is bad (a malformed line, a video that ends early). It is
  recorded in errors.jsonl, and that is final: a rerun gives the same verdict.
- an environment fault: a full disk, a missing ffmpeg, a worker process that was killed. The
  utterance may be fine. Nothing about it is recorded as final: the run stops with exit 1 and a
  message that says what to do, writes no dataset.json, and a plain rerun retries it.

`environment_cause` tells the two apart for an exception, `environment_cause_in_text` for an
error text that came from a child process (ffmpeg writes "No space left on device" to stderr).
"""
from __future__ import annotations

import errno
import os

_DISK_ERRNOS = tuple(code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None)
# The errors of the machine: no space, no quota, no file handles, a read-only disk; and, raised by
# this process itself (fork, mmap), no memory.
ENVIRONMENT_ERRNOS = (*_DISK_ERRNOS, errno.EROFS, errno.EMFILE, errno.ENFILE, errno.ENOMEM)
# Their messages as ffmpeg prints them (strerror). Not ENOMEM's: ffmpeg also reports a damaged
# stream that asks for an absurd allocation as "Cannot allocate memory", and a damaged file must
# stay a final, data error rather than fail every rerun.
_ENVIRONMENT_MESSAGES = tuple(os.strerror(code) for code in ENVIRONMENT_ERRNOS if code != errno.ENOMEM)
MEDIA_TOOLS = ("ffmpeg", "ffprobe")
TOOL_MISSING = "is not installed"

RERUN = "then rerun the same command: finished work in OUT is reused"
FREE_SPACE = f"free disk space (or choose an OUT on a larger disk), {RERUN}"
INSTALL_FFMPEG = f"install ffmpeg (it provides ffmpeg and ffprobe) and put it on PATH, {RERUN}"


class EnvironmentFault(Exception):
    """A failure of the machine, not of the data: never final, a rerun retries it.

    The message says what failed and what to do about it."""


def environment_cause(error: BaseException) -> str | None:
    """What of the machine failed, if `error` (or an exception it was raised from) is an
    environment fault; None for anything else, which is then the data's fault."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        cause = _own_cause(error)
        if cause:
            return cause
        error = error.__cause__ or error.__context__
    return None


def _own_cause(error: BaseException) -> str | None:
    if isinstance(error, EnvironmentFault):
        return str(error)
    if isinstance(error, FileNotFoundError) and _tool_name(error.filename):
        return f"{_tool_name(error.filename)} {TOOL_MISSING}"
    if isinstance(error, OSError) and error.errno in ENVIRONMENT_ERRNOS:
        return os.strerror(error.errno)
    return environment_cause_in_text(str(error))


def _tool_name(filename: object) -> str | None:
    name = os.path.basename(str(filename or ""))
    return name if name in MEDIA_TOOLS else None


def environment_cause_in_text(text: str) -> str | None:
    """The environment fault an error text names (a child process's stderr), or None."""
    for message in _ENVIRONMENT_MESSAGES:
        if message in text:
            return message
    for tool in MEDIA_TOOLS:
        if f"{tool} {TOOL_MISSING}" in text:
            return f"{tool} {TOOL_MISSING}"
    return None


def advice(cause: str) -> str:
    """What to do about a cause from environment_cause."""
    if cause.endswith(TOOL_MISSING):
        return INSTALL_FFMPEG
    if "disk" in cause or any(os.strerror(code) in cause for code in _DISK_ERRNOS):
        return FREE_SPACE
    return f"fix that, {RERUN}"
