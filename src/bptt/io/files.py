"""Writing files so that nothing on disk is ever half-written.

Every writer puts its bytes in a temporary file in the destination's folder and
``os.replace``s it over the destination: a reader (or a crash) sees the old file or the new
one, never a mix. ``atomic_output`` is for writers that want a path (matplotlib's savefig).
"""

from __future__ import annotations

import contextlib
import os
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
