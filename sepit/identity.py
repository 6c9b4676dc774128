"""Sequence identity between proteins: the number behind the retrieval baseline and the leakage report.

Identity of two sequences, in percent (0-100): the number of identical aligned residue pairs in an optimal
local alignment over the length of the SHORTER sequence, as in CD-HIT's global identity (Li & Godzik 2006).
The alignment is Smith-Waterman with BLOSUM62, gap open -11, extend -1 (the BLAST and MMseqs2 defaults); of
several optimal alignments Biopython's first counts. Letters BLOSUM62 lacks (U, O) align as X but compare as
written (U pairs with U). Identical sequences are 100; so is a short protein contained in a long one.

In a search only significant alignments count: with the shorter-length denominator a peptide of 7-11 residues
reaches 40-60 % by chance against almost any protein, and on SP14 such peptides, not homologs, held the maximum
identity of most test proteins. A hit needs E <= `max_evalue` (1e-3, MMseqs2's default), E = K m n exp(-lambda S)
for score S, query length m and n residues in the targets searched (or the `database` named), lambda 0.267 and
K 0.041 (NCBI BLAST's gapped BLOSUM62 11/1 values, no edge correction). A target identical to the query always
counts.

`IdentitySearch` aligns few targets per query: exact 3-mer matches are counted per (target, diagonal); the 300
targets with most matches on one diagonal get the best ungapped segment score on their 3 best diagonals (FASTA's
init1); the `candidates` best by it get the Smith-Waterman score, and the significant ones an alignment. Checked
against aligning all 3,906 SP14 training proteins for 40 test proteins: the maximum was exact for 37 (for 26 of
the 29 with a significant hit; the 3 misses were under 16 %), alike with 20 or 50 candidates.
This module must not import torch: `sepit score` uses it.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, NamedTuple

import numpy as np
from Bio.Align import PairwiseAligner, substitution_matrices

from sepit.cache import cache_dir
from sepit.data.jsonl import read_jsonl, write_jsonl_atomic
from sepit.errors import InputError

if TYPE_CHECKING:
    from sepit.evaluation.training_set import TrainingSet
    from sepit.tasks import Task

# Bump when the definition, the search or their settings change: it keys the on-disk cache.
METHOD_VERSION = "identity-v1"
BACKENDS = ("biopython", "mmseqs", "auto")
DEFAULT_CANDIDATES = 20
DEFAULT_MAX_EVALUE = 1e-3
K_MER, POOL, DIAGONALS = 3, 300, 3
# Targets per query that pass MMseqs2's prefilter to alignment (its own default): the most identical training
# protein is among them unless hundreds of others share more k-mers, and the search stays linear in the targets.
MMSEQS_MAX_SEQS = 300
LAMBDA, KAPPA = 0.267, 0.041  # BLOSUM62, gap open 11, extend 1 (NCBI BLAST blast_stat.c)

_BLOSUM62 = substitution_matrices.load("BLOSUM62")
_ALPHABET = frozenset(_BLOSUM62.alphabet)
_SCORES = np.array(_BLOSUM62, dtype=np.float64)  # (24, 24) in _BLOSUM62.alphabet order
_LETTER_CODE = np.full(256, _BLOSUM62.alphabet.index("X"), dtype=np.int64)
for _code, _letter in enumerate(_BLOSUM62.alphabet):
    _LETTER_CODE[ord(_letter)] = _code


class Hit(NamedTuple):
    protein_id: str
    identity: float  # percent, 0-100


def _aligner() -> PairwiseAligner:
    return PairwiseAligner(mode="local", substitution_matrix=_BLOSUM62, open_gap_score=-11, extend_gap_score=-1)


def _alignable(sequence: str) -> str:
    return "".join(c if c in _ALPHABET else "X" for c in sequence)


def _identity(aligner: PairwiseAligner, a: str, b: str, a_aligned: str, b_aligned: str) -> float:
    if a == b:
        return 100.0
    try:
        alignment = aligner.align(a_aligned, b_aligned)[0]
    except IndexError:  # nothing scores above zero
        return 0.0
    same = 0
    for (a_start, a_end), (b_start, b_end) in zip(*alignment.aligned):
        same += sum(x == y for x, y in zip(a[a_start:a_end], b[b_start:b_end]))
    return 100.0 * same / min(len(a), len(b))


def sequence_identity(a: str, b: str) -> float:
    """Percent identity of two sequences (the module docstring has the definition)."""
    a, b = a.upper(), b.upper()
    return _identity(_aligner(), a, b, _alignable(a), _alignable(b))


def _digits(sequence: str) -> np.ndarray:
    return _LETTER_CODE[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]


def _kmers(digits: np.ndarray) -> np.ndarray:
    """(L - k + 1,) the k-mer starting at each position, as an integer."""
    codes = np.zeros(max(len(digits) - K_MER + 1, 0), dtype=np.int64)
    for offset in range(K_MER):
        codes = codes * len(_SCORES) + digits[offset:len(codes) + offset]
    return codes


def resolve_backend(backend: str) -> str:
    """"biopython" or "mmseqs"; "auto" is MMseqs2 when its binary is on PATH. The leakage report uses "auto" (it
    scales to training sets of hundreds of thousands of proteins) and records which one ran; the retrieval baseline
    defaults to Biopython, so that its answers do not depend on what is installed."""
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r}", "unknown identity backend", f"Choose one of {', '.join(BACKENDS)}.")
    if backend == "auto":
        return "mmseqs" if shutil.which("mmseqs") else "biopython"
    if backend == "mmseqs" and not shutil.which("mmseqs"):
        raise InputError("identity backend 'mmseqs'", "needs the MMseqs2 binary `mmseqs` on PATH", "Install it with "
                         "`conda install -c bioconda mmseqs2` or `apt-get install mmseqs2`, or use the biopython backend.")
    return backend


_NO_DIAGONAL = np.iinfo(np.int32).min


class _PairStore:
    """(query, target) -> alignment score and identity, for every search of every process: kept in
    $SEPIT_CACHE/identity/pairs/<method>.jsonl, so the leakage report (in each `sepit bench`) and the retrieval
    baseline (in its own `sepit bench`) align a pair once, and a re-run aligns nothing. Appended whole lines
    only; a torn last line (a killed process) is skipped."""

    def __init__(self):
        self.values: dict[tuple[str, str], float] | None = None  # (kind "s"/"i", hash of the pair) -> value
        self.new: list[tuple[str, str, float]] = []

    @staticmethod
    def path() -> Path:
        return cache_dir() / "identity" / "pairs" / f"{METHOD_VERSION}.jsonl"

    @staticmethod
    def key(query: str, target: str) -> str:
        return hashlib.sha256(f"{query}\0{target}".encode()).hexdigest()[:24]

    def get(self, kind: str, query: str, target: str, compute) -> float:
        if self.values is None:
            self.values = {}
            try:
                for line in self.path().read_text().splitlines():
                    try:
                        row = json.loads(line)
                        self.values[row["t"], row["k"]] = float(row["v"])
                    except (ValueError, KeyError, TypeError):
                        continue
            except OSError:
                pass
        key = (kind, self.key(query, target))
        if key not in self.values:
            self.values[key] = float(compute())
            self.new.append((kind, key[1], self.values[key]))
        return self.values[key]

    def save(self) -> None:
        if not self.new:
            return
        try:
            self.path().parent.mkdir(parents=True, exist_ok=True)
            with open(self.path(), "a", encoding="utf-8") as handle:  # one write: whole lines
                handle.write("".join(json.dumps({"t": t, "k": k, "v": v}) + "\n" for t, k, v in self.new))
        except OSError:
            return  # a read-only cache costs time, not results
        self.new = []


_PAIRS = _PairStore()


class _Profile(NamedTuple):
    """What the prefilter knows about one query against every target."""

    hits: np.ndarray  # (T,) most exact 3-mer matches on one diagonal
    diagonals: np.ndarray  # (T, DIAGONALS) target position - query position of the best diagonals
    ungapped: np.ndarray  # (T,) best ungapped segment score on those diagonals; NaN until computed


class IdentitySearch:
    """Most identical targets of a query among a fixed reference set (a task's training proteins)."""

    def __init__(self, targets: Mapping[str, str], *, candidates: int = DEFAULT_CANDIDATES,
                 max_evalue: float = DEFAULT_MAX_EVALUE, backend: str = "biopython"):
        if candidates < 1 or not max_evalue > 0:
            raise ValueError(f"need candidates >= 1 and max_evalue > 0, got {candidates} and {max_evalue}")
        self.backend, self.candidates, self.max_evalue = resolve_backend(backend), candidates, max_evalue
        self.ids = sorted(targets)  # index order is id order, so ties break towards the smaller id
        self._index = {pid: i for i, pid in enumerate(self.ids)}
        self._sequences = [targets[pid].upper() for pid in self.ids]
        self._lengths = np.array([len(s) for s in self._sequences], dtype=np.int64)
        self._by_sequence: dict[str, list[int]] = {}
        for i, sequence in enumerate(self._sequences):
            self._by_sequence.setdefault(sequence, []).append(i)
        self._profiles: OrderedDict[str, _Profile] = OrderedDict()  # the last 1024 queries
        self._mmseqs_hits: dict[tuple[frozenset | None, str], list[Hit]] = {}  # (database, query) -> hits
        self._aligner = _aligner()
        if self.backend == "biopython":  # MMseqs2 indexes the targets itself: no 3-mer index of millions here
            self._build_index()

    def _build_index(self) -> None:
        self._alignable = [_alignable(s) for s in self._sequences]
        self._digits = [_digits(s) for s in self._alignable]
        kmers = [_kmers(d) for d in self._digits]
        codes = np.concatenate([np.zeros(0, np.int64)] + kmers)
        order = np.argsort(codes, kind="stable")  # an inverted index: k-mer -> (target, position)
        self._kmer = codes[order]
        self._kmer_target = np.repeat(np.arange(len(kmers)), [len(k) for k in kmers])[order]
        self._kmer_position = np.concatenate([np.zeros(0, np.int64)] + [np.arange(len(k)) for k in kmers])[order]

    def search(self, query: str, allowed: Iterable[str] | None = None) -> list[Hit]:
        """Significant hits among `allowed` (default all targets), most identical first, ties by smaller id."""
        return self.search_many({"query": query}, allowed)["query"]

    def search_many(self, queries: Mapping[str, str], allowed: Iterable[str] | None = None, *,
                    database: Iterable[str] | None = None) -> dict[str, list[Hit]]:
        """{query id: its significant hits among `allowed`}. The E-value counts the residues of `database`
        (default `allowed`, or all targets): pass a task's training proteins there to pick among a subset of
        them with the significance of a search of the whole task. One MMseqs2 run per database."""
        return {qid: hits for qid, (hits, _) in self._run(queries, allowed, database).items()}

    def nearest_many(self, queries: Mapping[str, str], allowed: Iterable[str] | None = None, *,
                     database: Iterable[str] | None = None) -> dict[str, Hit | None]:
        """{query id: its most identical significant hit}, or without one the best-scoring candidate
        (Biopython) or None (MMseqs2 reports only significant hits)."""
        return {qid: hits[0] if hits else best for qid, (hits, best) in self._run(queries, allowed, database).items()}

    def _run(self, queries: Mapping[str, str], allowed: Iterable[str] | None, database: Iterable[str] | None
             ) -> dict[str, tuple[list[Hit], Hit | None]]:
        allowed = None if allowed is None else set(allowed)
        database = allowed if database is None else set(database)
        if self.backend == "mmseqs":
            self.prefetch(queries.values(), database)
            key = None if database is None else frozenset(database)
            return {qid: ([h for h in self._mmseqs_hits[key, q.upper()] if allowed is None or h.protein_id in allowed],
                          None) for qid, q in queries.items()}
        mask, residues = self._mask(allowed), float(self._lengths[self._mask(database)].sum())
        from tqdm.auto import tqdm

        # Minutes for a few thousand queries on a fresh cache: show it, but not for a handful.
        steps = tqdm(queries.items(), desc="identity search", unit="protein", leave=False,
                     disable=len(queries) < 200)
        try:
            return {qid: self._search_one(sequence.upper(), mask, residues) for qid, sequence in steps}
        finally:
            _PAIRS.save()

    def _mask(self, allowed: set[str] | None) -> np.ndarray:
        if allowed is None:
            return np.ones(len(self.ids), dtype=bool)
        mask = np.zeros(len(self.ids), dtype=bool)
        mask[[self._index[pid] for pid in allowed if pid in self._index]] = True
        return mask

    def _profile(self, query: str, digits: np.ndarray) -> _Profile:
        if query in self._profiles:
            self._profiles.move_to_end(query)
            return self._profiles[query]
        codes = _kmers(digits)
        lo, hi = np.searchsorted(self._kmer, codes, "left"), np.searchsorted(self._kmer, codes, "right")
        found = np.concatenate([np.zeros(0, np.int64)] + [np.arange(a, b) for a, b in zip(lo, hi) if b > a])
        target = self._kmer_target[found]
        diagonal = self._kmer_position[found] - np.repeat(np.arange(len(codes)), hi - lo)
        width = int(self._lengths.max(initial=0)) + len(query) + 1
        keys, counts = np.unique(target * width + diagonal + len(query), return_counts=True)
        target, diagonal = keys // width, keys % width - len(query)
        order = np.lexsort((-counts, target))  # per target, most matches first; ties: smaller diagonal
        target, diagonal, counts = target[order], diagonal[order], counts[order]
        first = np.r_[True, target[1:] != target[:-1]] if len(target) else np.zeros(0, bool)
        rank = np.arange(len(target)) - np.maximum.accumulate(np.where(first, np.arange(len(target)), 0))
        hits = np.zeros(len(self.ids), dtype=np.int32)
        hits[target[first]] = counts[first]
        diagonals = np.full((len(self.ids), DIAGONALS), _NO_DIAGONAL, dtype=np.int32)
        keep = rank < DIAGONALS
        diagonals[target[keep], rank[keep]] = diagonal[keep]
        profile = _Profile(hits, diagonals, np.full(len(self.ids), np.nan, dtype=np.float32))
        self._profiles[query] = profile
        if len(self._profiles) > 1024:
            self._profiles.popitem(last=False)
        return profile

    def _ungapped(self, digits: np.ndarray, i: int, diagonals: np.ndarray) -> float:
        best = 0.0
        target = self._digits[i]
        for d in diagonals[diagonals != _NO_DIAGONAL].tolist():
            start, end = max(0, -d), min(len(digits), len(target) - d)
            if end > start:
                running = np.concatenate([[0.0], np.cumsum(_SCORES[digits[start:end], target[start + d:end + d]])])
                best = max(best, float((running - np.minimum.accumulate(running)).max()))
        return best

    def _candidates(self, query: str, mask: np.ndarray) -> np.ndarray:
        allowed = np.flatnonzero(mask)
        digits = _digits(_alignable(query))
        if len(allowed) <= self.candidates or len(query) < K_MER:
            return allowed  # few enough to align all; a query shorter than a k-mer has no matches to rank by
        profile = self._profile(query, digits)
        pool = allowed[np.lexsort((allowed, -profile.hits[allowed]))][:POOL]
        for i in pool[np.isnan(profile.ungapped[pool])].tolist():
            profile.ungapped[i] = self._ungapped(digits, i, profile.diagonals[i])
        return pool[np.lexsort((pool, -profile.ungapped[pool]))][:self.candidates]

    def _score(self, query: str, aligned: str, i: int) -> float:
        return _PAIRS.get("s", query, self._sequences[i], lambda: self._aligner.score(aligned, self._alignable[i]))

    def _hit(self, query: str, aligned: str, i: int) -> Hit:
        identity = _PAIRS.get("i", query, self._sequences[i], lambda: _identity(
            self._aligner, query, self._sequences[i], aligned, self._alignable[i]))
        return Hit(self.ids[i], identity)

    def _search_one(self, query: str, mask: np.ndarray, residues: float) -> tuple[list[Hit], Hit | None]:
        """(significant hits by identity, the best-scoring candidate)."""
        aligned = _alignable(query)
        exact = {i for i in self._by_sequence.get(query, ()) if mask[i]}
        chosen = sorted(set(self._candidates(query, mask).tolist()) | exact)
        scores = {i: self._score(query, aligned, i) for i in chosen}
        # E <= max_evalue  <=>  S >= log(K m n / max_evalue) / lambda
        threshold = math.log(KAPPA * len(query) * max(residues, 1.0) / self.max_evalue) / LAMBDA
        hits = [self._hit(query, aligned, i) for i in chosen if i in exact or scores[i] >= threshold]
        top = min(chosen, key=lambda i: (-scores[i], i), default=None)
        best = None if top is None else self._hit(query, aligned, top)
        return sorted(hits, key=lambda h: (-h.identity, h.protein_id)), best

    def prefetch(self, sequences: Iterable[str], database: Iterable[str] | None = None) -> None:
        """Search these queries against `database` (default all targets) now, in one MMseqs2 run; the hits are
        kept for later calls. Biopython searches lazily and needs no batching."""
        if self.backend != "mmseqs":
            return
        key = None if database is None else frozenset(database)
        targets = [i for i, pid in enumerate(self.ids) if key is None or pid in key]
        new = sorted({q.upper() for q in sequences if (key, q.upper()) not in self._mmseqs_hits})
        best: dict[str, dict[int, float]] = {q: {} for q in new}
        if new and targets:
            for query, i, identity in _run_mmseqs(new, [self._sequences[i] for i in targets], self.max_evalue):
                best[query][targets[i]] = max(best[query].get(targets[i], 0.0), identity)
        for query, found in best.items():
            found.update({i: 100.0 for i in self._by_sequence.get(query, ()) if i in targets})  # identical
            self._mmseqs_hits[key, query] = sorted((Hit(self.ids[i], v) for i, v in found.items()),
                                                   key=lambda h: (-h.identity, h.protein_id))


def _run_mmseqs(queries: list[str], targets: list[str], max_evalue: float) -> list[tuple[str, int, float]]:
    """(query, target index, identity) for each alignment MMseqs2 easy-search reports."""
    with tempfile.TemporaryDirectory(prefix="sepit-mmseqs-") as tmp:
        tmp = Path(tmp)
        (tmp / "query.fasta").write_text("".join(f">q{i}\n{q}\n" for i, q in enumerate(queries)))
        (tmp / "target.fasta").write_text("".join(f">t{i}\n{t}\n" for i, t in enumerate(targets)))
        command = ["mmseqs", "easy-search", str(tmp / "query.fasta"), str(tmp / "target.fasta"), str(tmp / "out.tsv"),
                   str(tmp / "work"), "-e", str(max_evalue), "--max-seqs", str(min(len(targets), MMSEQS_MAX_SEQS)),
                   "--format-output", "query,target,qaln,taln,qlen,tlen", "-v", "1"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"mmseqs easy-search failed (exit {result.returncode}): "
                               f"{(result.stderr or result.stdout).strip()[-2000:]}")
        rows = [line.split("\t") for line in (tmp / "out.tsv").read_text().splitlines()]
    found = []
    for qname, tname, qaln, taln, qlen, tlen in rows:
        # identical residues counted in the aligned sequences: MMseqs2 14 reports nident as 0
        # (soedinglab/MMseqs2 issues 288 and 979)
        same = sum(a == b != "-" for a, b in zip(qaln.upper(), taln.upper()))
        found.append((queries[int(qname[1:])], int(tname[1:]), 100.0 * same / min(int(qlen), int(tlen))))
    return found


def max_train_identity(task: Task, training: TrainingSet | None = None, *, candidates: int = DEFAULT_CANDIDATES,
                       max_evalue: float = DEFAULT_MAX_EVALUE, backend: str = "biopython"
                       ) -> dict[str, tuple[float, str]]:
    """{test sample id: (maximum identity of its protein to a training protein, that protein's id)}; (0.0, "")
    where no training protein aligns significantly. The training proteins: `training`, else the task's train split.
    Cached in $SEPIT_CACHE/identity/<key>.jsonl, keyed by the method, the training proteins and the test samples."""
    from sepit.evaluation.training_set import task_training_set
    from sepit.tasks import sample_hash

    training = training or task_training_set(task)
    if training is None:
        raise ValueError(f"task {task.name!r} has no training samples to compare its test proteins with")
    test = task.samples("test")
    backend = resolve_backend(backend)
    method = f"{METHOD_VERSION}/{backend}/k{K_MER}/pool{POOL}/c{candidates}/e{max_evalue:g}" + (
        f"/max-seqs{MMSEQS_MAX_SEQS}" if backend == "mmseqs" else "")
    key = hashlib.sha256(json.dumps([method, training.key(), sample_hash(test)]).encode()).hexdigest()
    path = cache_dir() / "identity" / f"{key}.jsonl"
    cached = _read_cache(path, {s.id for s in test})
    if cached is not None:
        return cached
    search = IdentitySearch(dict(training.sequences), candidates=candidates, max_evalue=max_evalue, backend=backend)
    hits = search.search_many({s.protein.sequence: s.protein.sequence for s in test})  # each protein once
    best = {seq: (found[0].identity, found[0].protein_id) if found else (0.0, "") for seq, found in hits.items()}
    result = {s.id: best[s.protein.sequence] for s in test}
    write_jsonl_atomic(path, ({"id": sid, "identity": value, "train_protein": pid}
                              for sid, (value, pid) in result.items()))
    return result


def _read_cache(path: Path, sample_ids: set[str]) -> dict[str, tuple[float, str]] | None:
    """The cached result, or None when missing or malformed (it is then recomputed and overwritten)."""
    try:
        result = {row["id"]: (float(row["identity"]), row["train_protein"]) for _, row in read_jsonl(path)}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    valid = all(0.0 <= value <= 100.0 and isinstance(pid, str) for value, pid in result.values())
    return result if valid and set(result) == sample_ids else None
