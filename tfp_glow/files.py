"""Files that are whole or absent: written under a temporary name, flushed, renamed, the folder synced.

A rename is atomic, but after a power loss (not only a killed process) the renamed file may still
be empty unless its data reached the disk first, and the rename itself unless the folder's entry
did. So every commit point of the package is, as databases do:

    write the temporary file -> flush and fsync it -> rename it over the target -> fsync the folder

`atomic_path(path)` gives the temporary path to write (by any writer that takes a path: Keras,
h5py, SavedModel) and commits it; `write_text` and `copy_file` use it. Directories (a SavedModel)
are committed the same way with `commit_directory`. A folder created for them (`make_directories`)
has its own entry synced in its parent first, so that what is committed in it stays reachable.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid

__all__ = [
    "atomic_path",
    "commit_directory",
    "copy_file",
    "fsync_directory",
    "fsync_file",
    "make_directories",
    "write_text",
]


def fsync_file(path: str) -> None:
    """Flushes a file's data to the disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_directory(path: str) -> None:
    """Flushes a folder's entries (a rename or a new file in it) to the disk."""
    descriptor = os.open(path or ".", os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def make_directories(path: str) -> None:
    """Creates the folder `path` and its missing parents, each new folder's entry synced in its
    parent (outermost first); folders that exist are left as they are."""
    path = os.path.abspath(path)
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except FileExistsError:
            if not os.path.isdir(folder):  # a file of that name; another writer's new folder is fine
                raise
        fsync_directory(os.path.dirname(folder))


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yields a temporary path beside `path`; on a clean exit the file written there is synced,
    renamed to `path` and the folder synced. On an error it is removed and `path` is untouched.

    `suffix` ends the temporary name (some writers choose the format by the extension)."""
    folder = os.path.dirname(path) or "."
    make_directories(folder)
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp{suffix}")
    try:
        yield temporary
        fsync_file(temporary)
        os.replace(temporary, path)
        fsync_directory(folder)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_text(path: str, text: str) -> None:
    """Writes `text` to `path` atomically and durably."""
    with atomic_path(path) as temporary, open(temporary, "w") as f:
        f.write(text)


def copy_file(source: str, path: str) -> None:
    """Copies `source` to `path` atomically and durably."""
    with atomic_path(path, suffix=os.path.splitext(path)[1]) as temporary:
        shutil.copyfile(source, temporary)


def commit_directory(temporary: str, path: str) -> None:
    """Renames the finished folder `temporary` to `path` (which must not exist), durably: every
    file in it synced first, then the parent folder."""
    for folder, _, names in os.walk(temporary):
        for name in names:
            fsync_file(os.path.join(folder, name))
        fsync_directory(folder)
    if os.path.exists(path):
        raise FileExistsError(f"{path} exists")
    os.rename(temporary, path)
    fsync_directory(os.path.dirname(path) or ".")
