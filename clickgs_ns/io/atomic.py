"""Small file helpers shared by every writer in the project: all writes are atomic.

A writer first writes ``.NAME.<host>-<pid>.<random>.tmp<suffix>`` beside ``NAME`` and renames it onto ``NAME`` when
complete. The host and process id in the name say whose file it is, so that a later process removes the temporary
files of writers that died (``leftover_temp_files``) and never those of a writer still at work (another
``clickgs masks`` on the same dataset).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

STALE_TEMP_SECONDS = 3600.0
"""A temporary file whose writer cannot be checked (another host's, or one named without its writer) is left over
only when it has not changed for this long: writing one file takes seconds."""


def writer_tag() -> str:
    """``<host>-<pid>`` of this process, as temporary file names carry it (host reduced to [A-Za-z0-9.-])."""
    return f"{re.sub(r'[^A-Za-z0-9.-]', '_', socket.gethostname())}-{os.getpid()}"


def temp_prefix(path: Path) -> str:
    """The start of the name of this process's temporary files for ``path``: ``.NAME.<host>-<pid>.``."""
    return f".{Path(path).name}.{writer_tag()}."


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    A killed or failing writer leaves ``path`` as it was (absent or complete), never half written.
    The temporary file keeps ``path``'s suffix so that writers which add a suffix (numpy) behave.
    """
    with atomic_paths([path]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(paths: Sequence[Path]) -> Iterator[Tuple[Path, ...]]:
    """Yield one temporary path beside each of ``paths``; when the block succeeds they are renamed onto ``paths``
    in order, each rename atomic; when it fails no file of ``paths`` changes and the temporary files are removed.

    The renames of several files are not one atomic step: a writer that must never leave a mixed set behind
    removes its commit marker before and writes it after the block (as ``clickgs_ns.segment.export`` does).
    """
    paths = [Path(p) for p in paths]
    temps: List[Path] = []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(path), suffix=f".tmp{path.suffix}", dir=path.parent)
            os.close(fd)
            temps.append(Path(tmp_name))
        yield tuple(temps)
        mode = 0o666 & ~current_umask()  # the permissions a plain write would give (mkstemp's are 0600)
        for tmp, path in zip(temps, paths):
            os.chmod(tmp, mode)
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            if tmp.exists():
                tmp.unlink()


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def temp_writer(tmp: Path, path: Path) -> Optional[Tuple[str, int]]:
    """(host, pid) of the writer of ``tmp``, a temporary file of ``path``; None when its name does not say (a
    temporary file named before writers were tagged, or no temporary file of ``path`` at all)."""
    name, suffix = re.escape(Path(path).name), re.escape(Path(path).suffix)
    match = re.fullmatch(rf"\.{name}\.(?P<host>[A-Za-z0-9._-]+)-(?P<pid>\d+)\.[^.]+\.tmp{suffix}", Path(tmp).name)
    return None if match is None else (match["host"], int(match["pid"]))


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a process of another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_leftover_temp(tmp: Path, path: Path, max_age_s: float = STALE_TEMP_SECONDS) -> bool:
    """Whether ``tmp``, a temporary file of ``path``, was left by a writer that is gone: one of this host whose
    process no longer runs, or (when that cannot be checked: another host's writer, or an untagged name) one not
    changed for ``max_age_s`` seconds."""
    writer = temp_writer(tmp, path)
    host = writer_tag().rsplit("-", 1)[0]
    if writer is not None and writer[0] == host:
        return not process_alive(writer[1])
    try:
        age = time.time() - Path(tmp).stat().st_mtime
    except FileNotFoundError:
        return False
    return age > max_age_s


def leftover_temp_files(path: Path, max_age_s: float = STALE_TEMP_SECONDS) -> List[Path]:
    """Temporary files that killed writers of ``path`` left beside it (``is_leftover_temp``); the temporary files
    of writers still at work, in this or any other process, are not listed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    found = path.parent.glob(f".{glob.escape(path.name)}.*.tmp{glob.escape(path.suffix)}")
    return sorted(tmp for tmp in found if is_leftover_temp(tmp, path, max_age_s))
