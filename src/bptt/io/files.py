"""Writing files so that nothing on disk is ever half-written.

Every writer puts its bytes in a temporary file in the destination's folder and
``os.replace``s it over the destination: a reader (or a crash) sees the old file or the new
one, never a mix. ``atomic_output`` is for writers that want a path (matplotlib's savefig).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import sys
import tempfile


def public_mode() -> int:
    """0666 less the umask: the mode an ordinary open() would have given the file
    (mkstemp makes 0600; results are for reading)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_output(path: str, suffix: str = ""):
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path``, on an
    error it is removed and ``path`` is untouched."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix or os.path.basename(path))
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, public_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


# ------------------------------------------------------------------ reading untrusted files
# Every file the program reads that a user (or a checkpoint) names goes through ``read_bytes``:
# it must be a regular file (a FIFO would block for ever, /dev/zero never ends, a directory is
# no text), no larger than the caller's bound, and it is opened O_NONBLOCK so that even opening a
# FIFO cannot hang (a FIFO is then refused by fstat, before any read).

MAX_TEXT_BYTES = 512 * 2**20          # a training/evaluation text: 512 MiB (README "Reliability")
MAX_SMALL_BYTES = 64 * 2**20          # a run's JSON-lines histories (metrics.jsonl, diagnostics.jsonl)
_KIND = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
         stat.S_IFDIR: "a directory", stat.S_IFSOCK: "a socket", stat.S_IFLNK: "a symbolic link"}


def file_kind(mode: int) -> str:
    return _KIND.get(stat.S_IFMT(mode), "not a regular file")


def open_regular(path, what: str = "", follow: bool = True) -> int:
    """A read-only fd on ``path`` after checking it is a regular file; ValueError (one line) otherwise,
    FileNotFoundError if it is not there. ``follow=False`` also refuses a symbolic link."""
    path = os.fspath(path)
    label = f"{what} {path}" if what else path
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"{what + ' ' if what else ''}No such file or directory", path) from None
    except IsADirectoryError:
        raise ValueError(f"{label} is a directory, not a regular file") from None
    except OSError as error:
        if not follow and error.errno == errno.ELOOP:
            raise ValueError(f"{label} is a symbolic link; refusing to follow it") from None
        raise OSError(f"cannot read {label}: {error.strerror or error}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ValueError(f"{label} is {file_kind(mode)}, not a regular file; refusing to read it")
    try:                                            # back to blocking reads for the regular file
        os.set_blocking(fd, True)
    except (AttributeError, OSError):              # pragma: no cover - platforms without it
        pass
    return fd


def read_bytes(path, max_bytes: int, what: str = "", follow: bool = True) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` (a larger file is refused with
    its size and the limit, before reading it)."""
    path = os.fspath(path)
    label = f"{what} {path}" if what else path
    fd = open_regular(path, what, follow)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise ValueError(f"{label} is {_size(size)}, more than the {_size(max_bytes)} bptt reads; "
                             f"use a smaller file")
        raw = f.read(max_bytes + 1)                 # a file that grows while we read is bounded too
    if len(raw) > max_bytes:
        raise ValueError(f"{label} grew past {_size(max_bytes)} while being read")
    return raw


def read_text_file(path, max_bytes: int = MAX_TEXT_BYTES, what: str = "") -> str:
    """A UTF-8 text file as ``str`` (a byte-order mark dropped): a regular file of at most
    ``max_bytes``; ValueError naming the file for one that is empty, not UTF-8, or binary
    (holding NUL bytes: no text file does, and 100 kB of zeros is no one-symbol text)."""
    path = os.fspath(path)
    label = f"{what} {path}" if what else path
    raw = read_bytes(path, max_bytes, what)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{label} is not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start}); "
                         f"convert it, e.g. iconv -f latin1 -t utf-8") from None
    nul = raw.find(b"\0")
    if nul >= 0:
        raise ValueError(f"{label} is a binary file, not text (a NUL byte at offset {nul}, "
                         f"{raw.count(0):,} in all)")
    del raw
    if text.startswith("\ufeff"):
        text = text[1:]                             # a UTF-8 byte-order mark is not content
    if not text:
        raise ValueError(f"{label} is empty")
    return text


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} bytes"


# ------------------------------------------------------------------ writing inside a run directory
def open_in_run(path, flags: int, mode: int = 0o666) -> int:
    """``os.open(path, flags | O_NOFOLLOW)``: a file the run writes is never reached through a
    symbolic link (a ``metrics.jsonl -> /etc/passwd`` planted in the run directory is refused,
    not appended to); and it must be a regular file."""
    path = os.fspath(path)
    try:
        fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0), mode)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ValueError(f"{path} is a symbolic link; bptt does not write through links "
                             f"(remove it: rm {path})") from None
        if error.errno == errno.ENXIO:              # a FIFO nobody reads
            raise ValueError(f"{path} is a FIFO (named pipe), not a regular file; bptt does not write to it") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ValueError(f"{path} is {file_kind(info.st_mode)}, not a regular file; bptt does not write to it")
    if info.st_nlink > 1:                           # a hard link to a file elsewhere: writing would change it
        os.close(fd)
        raise ValueError(f"{path} has {info.st_nlink} hard links (it is also a file elsewhere); bptt does not "
                         f"write to it (remove it: rm {path})")
    os.set_blocking(fd, True)
    return fd


class LineAppender:
    """Appends whole lines to a JSON-lines file (``metrics.jsonl``): each line goes out in one
    ``write``; if the disk fills mid-line the file is cut back to where the line began, so the file
    holds whole lines or none of the new one (readers skip a torn last line anyway, with a warning).

        with LineAppender(path) as log:
            log.append(json.dumps(record))
    """

    def __init__(self, path, lazy: bool = False):
        self.path = os.fspath(path)
        self.fd = None
        # lazy: a missing file appears with its first line (a run that fails before logging leaves no
        # empty file); one that exists is opened now, so a symlink or FIFO there is refused up front
        if not lazy or os.path.lexists(self.path):
            self._open()

    def _open(self) -> None:
        self.fd = open_in_run(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def append(self, line: str) -> None:
        if self.fd is None:
            self._open()
        data = (line.rstrip("\n") + "\n").encode("utf-8")
        start = os.fstat(self.fd).st_size
        try:
            written = os.write(self.fd, data)
            while written < len(data):              # short writes: keep going (raises when the disk is full)
                written += os.write(self.fd, data[written:])
        except BaseException:
            try:
                os.ftruncate(self.fd, start)        # no half line left behind
            except OSError:                         # pragma: no cover
                pass
            raise

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "LineAppender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def append_line(path, line: str) -> None:
    """Append one whole line to ``path`` (see ``LineAppender``)."""
    with LineAppender(path) as log:
        log.append(line)


# ------------------------------------------------------------------ temporaries of dead writers
_TMP_PID = re.compile(r"^\.(?P<base>.+)\.tmp(?P<pid>\d+)$")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(directory) -> list:
    """Remove ``.NAME.tmpPID`` files (a checkpoint writer's temporary) whose PID is not a live process:
    what a SIGKILL mid-save leaves behind. A live writer's temporary is kept. Returns the names removed."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = _TMP_PID.match(name)
        if match is None or int(match["pid"]) == os.getpid() or _pid_alive(int(match["pid"])):
            continue
        path = os.path.join(directory, name)
        try:
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.unlink(path)
                removed.append(name)
        except OSError:
            pass
    return removed


def _warn_stderr(message: str) -> None:
    print(f"bptt: warning: {message}", file=sys.stderr, flush=True)


def read_json_lines(path, max_bytes: int = MAX_SMALL_BYTES, warn=_warn_stderr) -> list:
    """Every JSON object in a JSON-lines file (``metrics.jsonl``, ``diagnostics.jsonl``): a regular
    file of at most ``max_bytes`` (a FIFO there cannot hang the reader); blank lines skipped; a bad
    line is a ValueError naming its number -- except a torn *last* line (no newline at its end: a
    writer killed or a disk filled mid-line), which is skipped with a warning."""
    path = os.fspath(path)
    raw = read_bytes(path, max_bytes)
    rows = raw.split(b"\n")
    torn = rows.pop() if rows else b""               # b"" when the file ends with a newline
    lines = []
    for number, row in enumerate(rows + ([torn] if torn.strip() else []), 1):
        last_and_torn = number == len(rows) + 1
        try:
            text = row.decode("utf-8").strip()
            if not text:
                continue
            line = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            if last_and_torn:
                warn(f"{path}: line {number} is cut short (a write that did not finish); skipped")
                break
            if isinstance(error, UnicodeDecodeError):
                raise ValueError(f"{path}: line {number} is not UTF-8 text ({error.reason})") from None
            if isinstance(error, RecursionError):
                raise ValueError(f"{path}: line {number} is nested too deeply") from None
            raise ValueError(f"{path}: line {number} is not JSON ({error.msg})") from None
        if not isinstance(line, dict):            # a hand-edited file must not crash the readers
            raise ValueError(f"{path}: line {number} is not a JSON object (got {type(line).__name__})")
        lines.append(line)
    return lines


RUN_FILES = ("checkpoint.npz", "best.npz", "metrics.jsonl", "diagnostics.jsonl")


def clear_previous_run(directory, names=RUN_FILES) -> list:
    """``--overwrite``: remove the previous run's files (links themselves, never their targets) and
    make the removal durable *before* the new run writes anything -- so a kill before the new run's
    first checkpoint leaves no old checkpoint for ``--resume`` to continue silently. Returns the
    names removed."""
    removed = []
    for name in names:
        path = os.path.join(directory, name)
        if os.path.lexists(path) and not os.path.isdir(path) or os.path.islink(path):
            os.unlink(path)
            removed.append(name)
    if removed:
        fsync_directory(directory)
    return removed


def fsync_directory(directory) -> None:
    """Make renames and removals in ``directory`` durable (a no-op where directories cannot be fsync'ed)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:                                 # pragma: no cover - platforms without dir fsync
        pass


def check_run_files(directory, names=RUN_FILES) -> None:
    """Before a run starts writing: every file it will append to or replace in ``directory`` is absent
    or a regular file with one link -- not a symlink, FIFO or hard link planted there (ValueError)."""
    for name in names:
        path = os.path.join(directory, name)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode):
            raise ValueError(f"{path} is a symbolic link; bptt does not write through links (remove it: rm {path})")
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path} is {file_kind(info.st_mode)}, not a regular file; bptt does not write to it")
        if info.st_nlink > 1 and name.endswith(".jsonl"):      # appended in place (checkpoints are replaced)
            raise ValueError(f"{path} has {info.st_nlink} hard links (it is also a file elsewhere); bptt does not "
                             f"write to it (remove it: rm {path})")
