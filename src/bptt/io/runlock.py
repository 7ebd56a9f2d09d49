"""One run directory, one writer: a lock file ``DIR/.bptt-lock`` held while ``bptt train`` runs.

    with RunLock("runs/x"):          # refused with RunLocked (a ValueError, one line) if another
        ...                          # live process holds it; released on exit, even on errors

The lock file holds JSON ``{"pid", "host", "start", "command", "token"}``. It is created
complete in one atomic step -- written to a private temporary file, then ``os.link``'ed to
the lock name, which fails if the name exists (the same guarantee as ``O_CREAT|O_EXCL``, but a
reader never sees a half-written lock; filesystems without hard links fall back to
``O_CREAT|O_EXCL``). A lock left behind by a process that died (SIGKILL, power loss) is
*stale*: if it names this host and its PID is gone -- or the PID now belongs to a process
started at another time (PID reuse; Linux ``/proc/PID/stat`` field 22) -- it is taken over
with a warning. A lock from another host cannot be checked from here and is always refused,
with the command to remove it by hand.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import uuid
import warnings

from .files import read_bytes, remove_stale_temporaries

LOCK_NAME = ".bptt-lock"


class RunLocked(ValueError):
    """The run directory is in use by another live process."""


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # field 2 (comm) may hold spaces and parentheses: split after the last ')'
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None          # field 22 overall


def _alive(pid: int, start: str | None) -> bool:
    """Is ``pid`` a live process, the same one that wrote the lock?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)                                       # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:                                   # exists, owned by another user
        return True
    now = _process_start(pid)
    return start is None or now is None or now == start       # a different start time: PID reused


class RunLock:
    """A lock on ``directory`` (created if missing; removed again on release if it was created
    here and is still empty, so a refused or failed run leaves nothing behind)."""

    def __init__(self, directory, command: str = "bptt train", warn=None):
        self.warn = warn              # warn(message) for a stale-lock takeover; None: warnings.warn
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, LOCK_NAME)
        self.command = command
        self.token = uuid.uuid4().hex
        self.held = False
        self._created_dir = False

    # ---------------------------------------------------------------- acquire
    def acquire(self) -> "RunLock":
        if self.held:
            return self
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise RunLocked(f"{self.directory} is a file, not a directory: choose another output directory")
        if not os.path.isdir(self.directory):
            try:
                os.makedirs(self.directory)
            except FileExistsError:
                pass                                          # made meanwhile by someone else: fine
            except OSError as error:
                raise OSError(f"cannot create the run directory {self.directory}: {error.strerror or error}") from None
            else:
                self._created_dir = True
        if not os.access(self.directory, os.W_OK | os.X_OK):
            self._forget_dir()
            raise PermissionError(f"the run directory {self.directory} is not writable")
        try:
            return self._acquire()
        except BaseException:
            self._forget_dir()                                # a refused or failed start leaves nothing behind
            raise

    def _acquire(self) -> "RunLock":
        for _ in range(3):                                    # create, or clear a stale lock and retry
            if self._create():
                self.held = True
                remove_stale_temporaries(self.directory)      # what killed writers left (.checkpoint.npz.tmpPID)
                return self
            holder = self.read()
            if holder is None:
                continue                                      # vanished between our try and our read
            if self._is_stale(holder):
                message = (f"taking over the stale lock {self.path} of process {holder.get('pid')} on "
                           f"{holder.get('host')}, which is no longer running")
                if self.warn is None:
                    warnings.warn(message, RuntimeWarning, stacklevel=2)
                else:
                    self.warn(message)
                self._remove_if(holder)
                continue
            raise RunLocked(self._describe(holder))
        raise RunLocked(f"{self.directory} is in use: could not take its lock {self.path}")

    def _record(self) -> bytes:
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "start": _process_start(os.getpid()),
                           "command": self.command, "token": self.token}).encode("utf-8")

    def _create(self) -> bool:
        """Create the lock atomically; False if it exists."""
        # .NAME.tmpPID: if this process is killed right here, the next start removes it (files.py)
        tmp = os.path.join(self.directory, f".bptt-lock.{self.token}.tmp{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as error:
            raise PermissionError(f"cannot write a lock in the run directory {self.directory}: "
                                  f"{error.strerror or error}") from None
        try:
            try:
                record = self._record()
                if os.write(fd, record) != len(record):
                    raise OSError(errno.ENOSPC, "short write")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as error:                              # a full disk: no temporary left behind
            os.unlink(tmp)
            raise OSError(f"cannot write a lock in the run directory {self.directory}: "
                          f"{error.strerror or error}") from None
        try:
            os.link(tmp, self.path)                           # atomic; EEXIST if held
            return True
        except FileExistsError:
            return False
        except OSError:                                       # no hard links here: O_EXCL + one write
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            try:
                os.write(fd, self._record())
            finally:
                os.close(fd)
            return True
        finally:
            os.unlink(tmp)

    def read(self) -> dict | None:
        """The holder's record; None if there is no lock; {} if it cannot be parsed."""
        try:                                                  # a FIFO or a huge file there must not hang us
            raw = read_bytes(self.path, 65536, follow=False)
        except FileNotFoundError:
            return None
        except (ValueError, OSError):
            return {}
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def _is_stale(self, holder: dict) -> bool:
        pid = holder.get("pid")
        if holder.get("host") != socket.gethostname() or isinstance(pid, bool) or not isinstance(pid, int):
            return False                                      # cannot tell: refuse rather than guess
        return not _alive(pid, holder.get("start"))

    def _remove_if(self, holder: dict) -> None:
        """Remove the lock only if it still is ``holder``'s (another process may have taken it over)."""
        if self.read() == holder:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def _describe(self, holder: dict) -> str:
        if not holder:
            return (f"{self.directory} is in use: its lock {self.path} is unreadable; if no run uses the "
                    f"directory, remove the lock (rm {self.path})")
        where = holder.get("host")
        here = where == socket.gethostname()
        return (f"{self.directory} is in use by {holder.get('command', 'another run')} (process {holder.get('pid')} "
                f"on {'this host' if here else where}); wait for it to finish or choose another directory"
                + ("" if here else f" (if that run is gone, remove {self.path})"))

    # ---------------------------------------------------------------- release
    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        holder = self.read()
        if holder and holder.get("token") == self.token:      # ours: never remove a lock taken over
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        self._forget_dir()

    def _forget_dir(self) -> None:
        """Remove the directory if this lock created it and nothing else was written there."""
        if self._created_dir:
            try:
                os.rmdir(self.directory)                      # fails (harmlessly) unless empty
            except OSError:
                pass
            self._created_dir = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class NoLock:
    """Stands in for RunLock where this process writes nothing (MPI ranks other than 0)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def lock_run(directory, enabled: bool = True, command: str | None = None):
    """``RunLock(directory)`` if ``enabled``, else a no-op context manager."""
    if not enabled:
        return NoLock()
    command = command or "bptt train"
    return RunLock(directory, command,
                   warn=lambda message: print(f"{command}: warning: {message}", file=sys.stderr, flush=True))
