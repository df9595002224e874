"""Where lightlens keeps downloaded and converted models.

``$LIGHTLENS_CACHE`` if set, else ``$XDG_CACHE_HOME/lightlens``, else ``~/.cache/lightlens``.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import secrets
import warnings
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no lock, so two first uses may both do the work (still safely)
    fcntl = None


def cache_dir() -> Path:
    """The cache folder (created on first use).

    >>> cache_dir().is_dir()
    True
    """
    root = os.environ.get("LIGHTLENS_CACHE")
    if root:
        path = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(xdg).expanduser() / "lightlens"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks; remembered while its size and mtime hold.

    Every ``score()`` with the default model resolves it again, so the ~100 MB GGUF must not
    be re-read each time.

    >>> _ = (tmp / "abc.txt").write_bytes(b"abc")
    >>> sha256_file(tmp / "abc.txt")[:16]
    'ba7816bf8f01cfea'
    """
    st = os.stat(path)
    return _sha256(os.path.realpath(path), st.st_size, st.st_mtime_ns, chunk)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int, chunk: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def partial_dir(target: str | Path) -> Path:
    """A new, empty folder beside ``target`` to build it in (then ``os.replace`` it into place).

    Made with the umask's permissions (a shared cache stays readable to its group and others),
    where ``tempfile.mkdtemp`` would make it 0700.

    >>> old = os.umask(0o022)
    >>> oct(partial_dir(tmp / "model").stat().st_mode & 0o777)
    '0o755'
    >>> _ = os.umask(old)
    """
    target = Path(target)
    path = target.parent / f".partial-{target.name}-{os.getpid()}-{secrets.token_hex(6)}"
    path.mkdir()
    return path


def share_like_folder(folder: str | Path) -> None:
    """Give what is inside ``folder`` the folder's permissions (files without execute), so files
    that a writer made private (safetensors writes 0600) are as readable as a :func:`partial_dir`.

    >>> old = os.umask(0o022)
    >>> work = partial_dir(tmp / "shared")
    >>> _ = (work / "weights").write_bytes(b"w"); (work / "weights").chmod(0o600)
    >>> share_like_folder(work); _ = os.umask(old)
    >>> oct(work.stat().st_mode & 0o777), oct((work / "weights").stat().st_mode & 0o777)
    ('0o755', '0o644')
    """
    mode = Path(folder).stat().st_mode & 0o777
    for path in Path(folder).rglob("*"):
        if not path.is_symlink():
            path.chmod(mode if path.is_dir() else mode & 0o666)


@contextlib.contextmanager
def file_lock(target: str | Path):
    """Hold an exclusive lock on ``<target>.lock`` while the block runs (other processes wait).

    Lets one process create ``target`` while the others wait, then find it done. The lock
    file stays; the lock is released when the block ends or the process dies.

    >>> with file_lock(tmp / "model"):
    ...     (tmp / "model").mkdir()
    >>> sorted(p.name for p in tmp.iterdir())
    ['model', 'model.lock']
    """
    lock = Path(f"{target}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX)
            except OSError as err:  # a filesystem without locks: go on unlocked, but say so
                warnings.warn(f"could not lock {lock} ({err}): processes starting at once may race", stacklevel=3)
        yield
