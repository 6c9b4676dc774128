"""Unpacking a submission archive (.zip, .tar, .tar.gz, .tgz) as data only.

Every member is checked before anything is written: a name that is absolute or climbs out with `..`, a link,
a device or any other non-regular file refuses the whole archive, listing the members at fault. Sizes are
capped while copying (not trusted from the header), so a zip bomb stops at the cap.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from sepit.data.errors import DataError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
MAX_BYTES = 2 << 30  # 2 GiB unpacked: SP14 predictions are a few MB


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def safe_name(name: str) -> PurePosixPath | None:
    """The member's relative path, or None when it would land outside the target folder."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        return None
    return path


def unpack(archive: Path, target: Path, max_bytes: int = MAX_BYTES) -> None:
    if archive.name.lower().endswith(".zip"):
        _unzip(archive, target, max_bytes)
    else:
        _untar(archive, target, max_bytes)


def _refuse(archive: Path, bad: list[str]) -> None:
    if bad:
        shown = "; ".join(bad[:20]) + (f"; and {len(bad) - 20} more" if len(bad) > 20 else "")
        raise DataError(str(archive), f"holds entries that are not plain files within it: {shown}",
                        "A submission holds only files (submission.json, predictions/*.jsonl, results.json) "
                        "with relative paths; repack it without links or absolute paths.")


def _untar(archive: Path, target: Path, max_bytes: int) -> None:
    try:
        tar = tarfile.open(archive)
    except (tarfile.TarError, OSError) as err:
        raise DataError(str(archive), f"is not a readable tar archive ({err})", "Pack it with `tar czf`.") from None
    with tar:
        members = tar.getmembers()
        bad = [f"{m.name!r} ({'escapes the folder' if safe_name(m.name) is None else 'not a regular file'})"
               for m in members if safe_name(m.name) is None or not (m.isfile() or m.isdir())]
        _refuse(archive, bad)
        budget = max_bytes
        for member in members:
            destination = target / safe_name(member.name)
            if member.isdir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            budget = _copy(tar.extractfile(member), destination, budget, archive, max_bytes)


def _unzip(archive: Path, target: Path, max_bytes: int) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(str(archive), f"is not a readable zip archive ({err})", "Pack it with `zip -r`.") from None
    with zf:
        infos = zf.infolist()
        bad = []
        for info in infos:
            mode = info.external_attr >> 16
            if safe_name(info.filename) is None:
                bad.append(f"{info.filename!r} (escapes the folder)")
            elif mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                bad.append(f"{info.filename!r} (not a regular file)")
        _refuse(archive, bad)
        budget = max_bytes
        for info in infos:
            destination = target / safe_name(info.filename)
            if info.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            with zf.open(info) as source:
                budget = _copy(source, destination, budget, archive, max_bytes)


def _copy(source, destination: Path, budget: int, archive: Path, max_bytes: int) -> int:
    """Copy one member while `budget` bytes remain of the `max_bytes` the whole archive may unpack to."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with open(destination, "wb") as out:
        while chunk := source.read(1 << 20):
            budget -= len(chunk)
            if budget < 0:
                limit = f"{max_bytes >> 20} MiB" if max_bytes >= 1 << 20 else f"{max_bytes} bytes"
                raise DataError(str(archive), f"unpacks to more than {limit}",
                                "Submit only the predictions and metadata.")
            out.write(chunk)
    return budget


def refuse_links(folder: Path) -> None:
    """A submission folder is read in place; a link in it would read (and `add` would copy) files elsewhere."""
    links = [str(p.relative_to(folder)) for p in sorted(folder.rglob("*")) if p.is_symlink()]
    _refuse(folder, [f"{name!r} (a link)" for name in links])
