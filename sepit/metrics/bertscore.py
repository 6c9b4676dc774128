"""BERTScore as the official SEPIT evaluation computes it (`evaluate_task.py`), for the open tasks of a run that asks
for it (`--scoring.bertscore_model DIR`).

The official code cuts each answer and reference to 500 WordPiece tokens with the model's own tokenizer, decodes
them back to text, and scores each pair with `bert_score` on the model's last layer, without idf or baseline
rescaling. This module does the same with the `bert-score` package itself: torchmetrics' `BERTScore` does not
reproduce it (on the test's pairs in one call, 0.002 to 0.18 apart on the 0-1 scale; tests/test_bertscore.py says how it
was measured). Values are 0-100 per sample, averaged under the scoring's weight rows like every other metric.

Torch, transformers and bert_score are imported only when a scorer is made, so scoring stays importable without
them. Nothing is downloaded: the model is a local folder, and results record its fingerprint so that a board never
mixes BERTScores of two models.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np

from sepit.errors import InputError
from sepit.metrics.bootstrap import weighted_mean

# The official model (evaluate_task.py's bert_model_name), under its current name on the Hugging Face hub.
OFFICIAL_MODEL = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"
FORMER_NAME = "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract"
MAX_TOKENS = 500  # evaluate_task.py: encode(..., max_length=500, truncation=True, add_special_tokens=False)
METRICS = ("bertscore_precision", "bertscore_recall", "bertscore_f1")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.index.json")  # what transformers loads in torch
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
GET_MODEL = (f"On a machine with internet: `hf download {OFFICIAL_MODEL} --local-dir DIR` (formerly {FORMER_NAME}, "
             "the model the official evaluation used), copy DIR here and give --scoring.bertscore_model DIR")


def model_files(folder: Path) -> list[Path]:
    """The files that decide the numbers, checked without importing torch: config, weights and tokenizer."""
    where = "--scoring.bertscore_model"
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(where, f"{folder} is not a folder", GET_MODEL)
    weights = sorted({path for pattern in WEIGHT_PATTERNS for path in folder.glob(pattern)})
    if not (folder / "config.json").is_file() or not weights:
        raise InputError(where, f"{folder} has no config.json or no PyTorch weights (model.safetensors, "
                         "pytorch_model.bin)", GET_MODEL)
    tokenizer = [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]
    if not (folder / "vocab.txt").is_file():  # bert_score loads the WordPiece tokenizer from it
        raise InputError(where, f"{folder} has no WordPiece vocabulary (vocab.txt)", GET_MODEL)
    if importlib.util.find_spec("bert_score") is None:
        raise InputError(where, "BERTScore needs the bert-score package",
                         "Install it: pip install 'sepit-bench[bertscore]'")
    return sorted([folder / "config.json", *weights, *tokenizer], key=lambda p: p.name)


def fingerprint(files: Sequence[Path], layer: int) -> str:
    """SHA-256 over the files' names and bytes, the layer and the cut: equal fingerprints, comparable scores."""
    digest = hashlib.sha256(f"layer={layer};max_tokens={MAX_TOKENS};idf=False;rescale=False".encode())
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class BertScorer:
    """Per-sample BERTScore precision, recall and F1 (0-100) of answers against references, the official way."""

    def __init__(self, folder: Path, batch_size: int = 64):
        import bert_score
        from transformers import AutoConfig, AutoTokenizer

        self.folder, files = Path(folder), model_files(folder)
        config = AutoConfig.from_pretrained(self.folder)
        self.layer = config.num_hidden_layers  # evaluate_task.py: num_layers=config.num_hidden_layers, the last
        self.cutter = AutoTokenizer.from_pretrained(self.folder)  # the official cut uses AutoTokenizer's default
        self.scorer = bert_score.BERTScorer(model_type=str(self.folder), num_layers=self.layer, idf=False,
                                            rescale_with_baseline=False, batch_size=batch_size)
        # PubMedBERT's folder sets no model_max_length; bert_score passes it to the tokenizer as max_length, which
        # recent fast tokenizers refuse as too big. The model's positions bound it anyway (502 tokens after the cut).
        tokenizer = self.scorer._tokenizer
        tokenizer.model_max_length = min(tokenizer.model_max_length, config.max_position_embeddings)
        self._record = {"model": self.folder.name, "fingerprint": fingerprint(files, self.layer),
                        "files": [path.name for path in files], "layer": self.layer, "max_tokens": MAX_TOKENS,
                        "idf": False, "rescale_with_baseline": False,
                        "implementation": f"bert-score {_version('bert-score')}"}

    def cut(self, text: str) -> str:
        """The official truncation: the first 500 WordPiece tokens, decoded back to text."""
        return self.cutter.decode(self.cutter.encode(text, max_length=MAX_TOKENS, truncation=True,
                                                     add_special_tokens=False))

    def per_sample(self, predictions: Sequence[str], references: Sequence[str]) -> dict[str, np.ndarray]:
        """Metric name -> (n,) values, 0-100. A text empty after the cut scores 0, bert_score's own rule (which its
        code no longer reaches with recent transformers)."""
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
        cands, refs = [self.cut(p) for p in predictions], [self.cut(r) for r in references]
        scored = [i for i, (c, r) in enumerate(zip(cands, refs)) if c.strip() and r.strip()]
        values = np.zeros((len(METRICS), len(cands)))
        if scored:
            found = self.scorer.score([cands[i] for i in scored], [refs[i] for i in scored])
            values[:, scored] = 100 * np.stack([v.double().cpu().numpy() for v in found])
        return dict(zip(METRICS, values))

    def record(self) -> dict:
        """What results.json records (`metric_profile.bertscore`): the model's fingerprint and the settings."""
        return dict(self._record)


def bertscore_metrics(values: dict[str, np.ndarray], W: np.ndarray) -> dict[str, np.ndarray]:
    """Metric name -> value per row of W (B, n): the weighted mean of the per-sample values."""
    return {name: weighted_mean(per_sample, W) for name, per_sample in values.items()}


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
