"""Real file-system faults for the state database: files the kernel refuses to write.

`read_only_files` sets the immutable attribute (`chattr +i`) on the database, its WAL and
their directory. Unlike a file mode, it also stops writes through descriptors that are
already open, which is what a file system remounted read-only after an I/O error does to a
running daemon: SQLite's next write fails with "disk I/O error". The shared-memory index
(`-shm`) is left alone: it is mapped into memory, and a write to a mapped immutable page is a
SIGBUS, not an error. Setting the attribute needs CAP_LINUX_IMMUTABLE (root).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["read_only_files"]


def _chattr(flag: str, paths: list[Path]) -> None:
    done = subprocess.run(
        ["chattr", flag, *map(str, paths)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"chattr {flag} failed ({done.stderr.strip()}): the disk-fault tests need "
            "CAP_LINUX_IMMUTABLE (root) on a file system with the immutable attribute"
        )


@contextmanager
def read_only_files(db: Path) -> Iterator[None]:
    """Make `db`, its WAL and its directory immutable until the block ends."""
    paths = [p for p in (db, Path(f"{db}-wal")) if p.exists()] + [db.parent]
    _chattr("+i", paths)
    try:
        yield
    finally:
        _chattr("-i", paths)
