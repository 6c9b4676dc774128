"""Scheduler arrays: independent jobs that each predict a share of one run into the same output folder.

`sepit bench ... --shard K/N` predicts the samples whose (task, id) hash falls in share K of N: deterministic,
disjoint, and the same whatever has been predicted already, so a killed shard re-run predicts only what it
still owes. Each job writes its own journal files (named after its host, shard and rank), so concurrent jobs
never write the same file. Whichever job finds every row present merges and scores, under an exclusive lock on
`<output>/.finish.lock` (released by the kernel if that job dies), so two jobs never merge at once; merging
leaves alone the journals of jobs still writing (each holds its journal's lock). On a filesystem whose locks are
local to a node (Lustre `localflock`, NFS `nolock`) two nodes may both merge: the result is the same rows.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sepit.data.errors import DataError
from sepit.data.sample import InstructionSample


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        parts = text.split("/")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts) or not 1 <= int(parts[0]) <= int(parts[1]):
            raise DataError("--shard", f"{text!r} is not K/N with 1 <= K <= N", "Write e.g. --shard 2/8 for the "
                            "second of eight jobs (SLURM: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT).")
        return cls(int(parts[0]), int(parts[1]))

    @property
    def label(self) -> str:
        return f"shard{self.index}of{self.count}"

    def owns(self, sample: InstructionSample) -> bool:
        return shard_of(sample.task, sample.id, self.count) == self.index


def launched_as_one_of_many() -> bool:
    """Whether a launcher (torchrun, SLURM's srun, Lightning's own for ranks > 0) started this process as one
    of several that form one run: then every process must join the collective run, even with nothing to do."""
    ntasks = os.environ.get("SLURM_NTASKS", "1")
    return any(os.environ.get(name) for name in ("LOCAL_RANK", "RANK")) or \
        int(os.environ.get("WORLD_SIZE", "1")) > 1 or (ntasks.isdigit() and int(ntasks) > 1)


def shard_of(task: str, sample_id: str, count: int) -> int:
    """The 1-based share a sample belongs to: a hash, so shares are even and fixed."""
    digest = hashlib.sha256(f"{task}\0{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


@contextmanager
def finish_lock(output: Path) -> Iterator[str | None]:
    """Yields None when this job holds the folder's finishing lock, else who holds it ("host pid ... since ...")."""
    output.mkdir(parents=True, exist_ok=True)
    path = output / ".finish.lock"
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            yield handle.read().strip() or "another job"
            return
        except OSError as err:  # a filesystem without flock (Lustre -o noflock, NFS without lockd)
            warnings.warn(f"{path}: no file lock on this filesystem ({err.strerror}); merging without one")
            yield None
            return
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{socket.gethostname()} pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            handle.flush()
            yield None
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
