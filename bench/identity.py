"""The leakage report's identity search (`sepit.identity`): MMseqs2 against Biopython, and its cost as the training
set grows.

`agreement`: every SP14 test protein against SP14's 3,906 training proteins, by both backends; how far the
maximum identities differ (per protein, and per leakage bin). `scale`: 5,000 test proteins against training sets
of growing size, each backend timed with its peak memory (its own process: RSS of Python plus the MMseqs2 child):
SP14's training proteins, then 50,000 and 500,000 UniProtKB/Swiss-Prot 2014-01 sequences from Debian's
`metastudent-data` (516,371 accessions; for the benchmark only, never in CI):

    apt-get download metastudent-data && dpkg-deb -x metastudent-data_*.deb x
    for o in BPO MFO CCO; do blastdbcmd -db x/usr/share/metastudent-data/dataset_201401/$o/goasp.fasta \\
        -entry all -outfmt "%t	%s"; done | awk -F'\\t' '{split($1,a,"|"); print ">"a[1]"\\n"$2}' > sp2014.fasta
    .venv/bin/python bench/identity.py agreement
    .venv/bin/python bench/identity.py scale --fasta sp2014.fasta --sizes 50000 500000 --biopython-max 50000

Biopython aligns query by query, so its rate is timed on the first 500 queries (`--biopython-queries`).

The 5,000 test proteins are drawn (seed 0) from the FASTA file; the training sets from the rest, so no test
protein is in its training set by accession (an identical sequence under another accession may be).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, table  # noqa: E402

CHILD = """
import json, resource, sys, time
from sepit.identity import IdentitySearch
queries, targets, backend = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
start = time.perf_counter()
search = IdentitySearch(targets, backend=backend)
hits = search.search_many({q: q for q in queries})
seconds = time.perf_counter() - start
best = {q: (h[0].identity if h else 0.0) for q, h in hits.items()}
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
json.dump({"seconds": seconds, "peak_mb": peak / 1024, "best": best}, open(sys.argv[4], "w"))
"""


def search(queries: list[str], targets: dict[str, str], backend: str, folder: Path) -> dict:
    """One search in its own process (a fresh alignment cache, its own peak memory)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "q.json").write_text(json.dumps(queries))
    (folder / "t.json").write_text(json.dumps(targets))
    env = {"SEPIT_CACHE": str(folder / "cache"), "PATH": "/usr/bin:/bin", "HOME": str(folder), "TQDM_DISABLE": "1"}
    subprocess.run([sys.executable, "-c", CHILD, str(folder / "q.json"), str(folder / "t.json"), backend,
                    str(folder / "out.json")], check=True, env=env)
    return json.loads((folder / "out.json").read_text())


def sp14() -> tuple[list[str], dict[str, str]]:
    rows = [json.loads(line) for line in open(Path(__file__).resolve().parents[1] / "benchmarks/sp14/data/proteins.jsonl")]
    test = sorted({r["sequence"] for r in rows if r["split"] == "test"})
    return test, {r["accession"]: r["sequence"] for r in rows if r["split"] == "train"}


def agreement(out: Path) -> dict:
    queries, targets = sp14()
    runs = {backend: search(queries, targets, backend, out / f"agreement-{backend}") for backend in ("biopython", "mmseqs")}
    a, b = runs["biopython"]["best"], runs["mmseqs"]["best"]
    diffs = sorted(abs(a[q] - b[q]) for q in queries)
    bins = [0, 30, 50, 70, 90, 101]
    label = lambda v: next(i for i in range(5) if bins[i] <= v < bins[i + 1])  # noqa: E731
    same_bin = sum(label(a[q]) == label(b[q]) for q in queries)
    share = lambda limit: 100.0 * sum(d <= limit for d in diffs) / len(diffs)  # noqa: E731
    rows = [[backend, len(queries), len(targets), round(r["seconds"], 1), round(r["peak_mb"])]
            for backend, r in runs.items()]
    print(table(["backend", "queries", "targets", "seconds", "peak MB"], rows))
    summary = {"proteins": len(queries), "within_1": share(1.0), "within_5": share(5.0), "within_10": share(10.0),
               "same_bin": 100.0 * same_bin / len(queries), "max_diff": diffs[-1],
               "mean_diff": sum(diffs) / len(diffs),
               "median_biopython": sorted(a.values())[len(a) // 2], "median_mmseqs": sorted(b.values())[len(b) // 2]}
    print("\n" + table(list(summary), [[round(v, 2) if isinstance(v, float) else v for v in summary.values()]]))
    return {"runs": {k: {x: v[x] for x in ("seconds", "peak_mb")} for k, v in runs.items()}, "summary": summary}


def read_fasta(path: Path) -> dict[str, str]:
    from sepit.data.fasta import read_fasta as read

    return read(path)


def scale(out: Path, fasta: Path | None, sizes: list[int], queries_n: int, biopython_max: int,
          biopython_queries: int) -> dict:
    rng = random.Random(0)
    _, sp14_train = sp14()
    sets: list[tuple[str, dict[str, str]]] = [("SP14 train", sp14_train)]
    if fasta is not None:
        proteins = read_fasta(fasta)
        ids = sorted(proteins)
        rng.shuffle(ids)
        queries = [proteins[i] for i in ids[:queries_n]]
        rest = ids[queries_n:]
        sets += [(f"Swiss-Prot {n:,}", {i: proteins[i] for i in rest[:n]}) for n in sizes]
    else:
        queries, _ = sp14()
    headers = ["training set", "targets", "queries", "backend", "search s", "s per 1k queries", "peak MB"]
    rows, record = [], []
    for name, targets in sets:
        for backend in ("mmseqs", "biopython"):
            if backend == "biopython" and len(targets) > biopython_max:
                rows.append([name, len(targets), 0, backend, None, None, None])
                continue
            # Biopython aligns query by query, so a subset of the queries measures its rate.
            chosen = queries[:biopython_queries] if backend == "biopython" else queries
            result = search(chosen, targets, backend, out / f"scale-{len(targets)}-{backend}")
            rate = 1000 * result["seconds"] / len(chosen)
            rows.append([name, len(targets), len(chosen), backend, round(result["seconds"], 1), round(rate, 1),
                         round(result["peak_mb"])])
            record.append({"set": name, "targets": len(targets), "residues": sum(map(len, targets.values())),
                           "queries": len(chosen), "backend": backend, "seconds": result["seconds"],
                           "seconds_per_1k_queries": rate, "peak_mb": result["peak_mb"]})
            print(table(headers, [rows[-1]]), flush=True)
    print("\n" + table(headers, rows))
    return {"runs": record}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["agreement", "scale"])
    parser.add_argument("--fasta", type=Path, help="training proteins to draw from (scale)")
    parser.add_argument("--sizes", type=int, nargs="*", default=[50_000, 500_000])
    parser.add_argument("--queries", type=int, default=5_000)
    parser.add_argument("--biopython-max", type=int, default=50_000, help="larger sets: MMseqs2 only")
    parser.add_argument("--biopython-queries", type=int, default=500, help="queries Biopython's rate is timed on")
    parser.add_argument("--output", type=Path, default=Path("/tmp/sepit-bench-identity"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = agreement(args.output) if args.mode == "agreement" else \
        scale(args.output, args.fasta, args.sizes, args.queries, args.biopython_max, args.biopython_queries)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine(), "mode": args.mode, **result,
                                         "seconds": time.perf_counter() - started, "rss_before_mb": before / 1024},
                                        indent=2))


if __name__ == "__main__":
    main()
