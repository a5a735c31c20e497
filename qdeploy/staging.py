"""Files and folders that appear whole or not at all: written to a temporary sibling, moved into place on success,
deleted on failure (a crash, a refusal, Ctrl-C)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from qdeploy.errors import QDeployError


def _current_umask() -> int:
    """The process's umask. POSIX only lets one read it by setting it, so set it and put it straight back."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _ordinary_permissions(path: Path, directory: bool) -> None:
    """Give a path made by ``tempfile`` (0600 files, 0700 folders: private while being written) the permissions an
    ordinary ``open``/``mkdir`` would have given it, so outputs can be shared like any other file."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_current_umask())


def make_parent(out: Path) -> None:
    """Create ``out``'s folder, or say in one line why it cannot be (a file in the way, no permission)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise QDeployError(f"cannot create {out.parent}: {exc.filename or out.parent} is a file; choose another -o") from exc
    except OSError as exc:
        raise QDeployError(f"cannot create {out.parent}: {exc.strerror}; choose another -o") from exc


@contextlib.contextmanager
def staged_file(out: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``out`` (same suffix); on success it replaces ``out``, on failure it is
    deleted. Same folder, so the final rename is atomic."""
    out = Path(out)
    make_parent(out)
    fd, name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    _ordinary_permissions(tmp, directory=False)
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


#: written into every staging folder qdeploy creates: whose it is (process id), so a later run may remove it
STAGING_MARKER = ".qdeploy-staging"
#: the previous output while it is being replaced (between two renames)
PREVIOUS = "previous"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _marker(role: str) -> str:
    # the host too: on a folder shared between machines (a sweep cache on a cluster) a process id means nothing to
    # another machine, so only the machine that wrote a marker may judge it stale
    return f"{os.getpid()} {role} {socket.gethostname()}"


def _staging_owner(folder: Path) -> tuple[int, str] | None:
    """(pid, role) from a staging folder's marker written on this machine, or None when it is not one of qdeploy's
    or another machine's."""
    try:
        pid, role, host = (folder / STAGING_MARKER).read_text().split()
        return (int(pid), role) if host == socket.gethostname() else None
    except (OSError, ValueError):
        return None


def clean_stale_staging(out: Path) -> None:
    """Remove staging folders beside ``out`` that a killed qdeploy left (recognised by their marker, their process
    gone). A previous output caught between the two renames of a replacement is put back first."""
    for folder in out.parent.glob(f".{out.name}.*"):
        owner = _staging_owner(folder) if folder.is_dir() else None
        if owner is None or _process_alive(owner[0]):
            continue
        if owner[1] == PREVIOUS and not out.exists() and (folder / "out").is_dir():
            os.replace(folder / "out", out)  # the replacement never landed: the previous output is whole, restore it
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(out: str | Path, marker: str) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success replace ``out`` with it, on failure (an exception, Ctrl-C,
    SIGTERM turned into an exception by the CLI) delete it. An existing ``out`` is replaced only when it is empty or a
    previous output (it holds the file ``marker``). The replacement is two renames (old aside, new in), so ``out`` is
    always either the whole old or the whole new folder; a kill between them is repaired by the next run."""
    out = Path(out)
    make_parent(out)
    clean_stale_staging(out)
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / marker).exists())):
        raise QDeployError(f"output folder {out} exists and is not a qdeploy output; choose another -o")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    _ordinary_permissions(tmp, directory=True)
    (tmp / STAGING_MARKER).write_text(_marker("new"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    aside = None
    if out.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        (aside / STAGING_MARKER).write_text(_marker(PREVIOUS))
        os.replace(out, aside / "out")  # the old output, whole, inside a marked folder
    os.replace(tmp, out)
    (out / STAGING_MARKER).unlink(missing_ok=True)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
