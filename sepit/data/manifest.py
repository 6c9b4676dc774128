"""SHA-256 manifests of data files, in `sha256sum` format so `sha256sum -c MANIFEST.sha256` checks them too."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from sepit.data.errors import DataError


def sha256_file(path: str | Path) -> str:
    stat = Path(path).stat()
    return _sha256(str(path), stat.st_mtime_ns, stat.st_size)


def sha256_folder(folder: str | Path) -> list[str]:
    """SHA-256 of every file under `folder`, in path order; hidden folders (.git, .cache download metadata)
    are left out, as they change without the model changing."""
    folder = Path(folder)
    return [sha256_file(f) for f in sorted(folder.rglob("*"))
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(folder).parts)]


@lru_cache(maxsize=256)
def _sha256(path: str, mtime_ns: int, size: int) -> str:  # keyed by mtime and size: an edit re-hashes
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(path: str | Path) -> dict[str, str]:
    entries = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            digest, _, name = line.partition("  ")
            if len(digest) != 64 or not name:
                raise DataError(f"{path}, line {number}", "not a '<sha256>  <file name>' line",
                                "Regenerate the manifest with `sepit data manifest`.")
            entries[name] = digest
    return entries


def write_manifest(path: str | Path, files: Iterable[str | Path]) -> None:
    path = Path(path)
    lines = [f"{sha256_file(f)}  {Path(f).relative_to(path.parent)}" for f in sorted(map(Path, files))]
    path.write_text("\n".join(lines) + "\n")


def verify_files(manifest: str | Path, names: Iterable[str]) -> dict[str, str]:
    """Check that each named file beside `manifest` matches it; return {name: sha256}."""
    manifest = Path(manifest)
    expected, hashes = read_manifest(manifest), {}
    for name in names:
        if name not in expected:
            raise DataError(str(manifest), f"{name} is not listed",
                            "Add it with `sepit data manifest` and bump the task version.")
        actual = sha256_file(manifest.parent / name)
        if actual != expected[name]:
            raise DataError(str(manifest.parent / name),
                            f"does not match its manifest (sha256 {actual[:12]}…, expected {expected[name][:12]}…)",
                            "The bundled data was changed: restore it (e.g. `git checkout` that file), or, for an "
                            "intended change, bump the task version and run `sepit data manifest`.")
        hashes[name] = actual
    return hashes
