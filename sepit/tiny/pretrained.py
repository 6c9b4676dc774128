"""Pretrained tiny parts for the CPU demo, as the paper starts from pretrained ESM-2 and a pretrained chat LLM.

No model hub is reachable here, so the demo pretrains its own, once, from a committed recipe:

    pretrained:esm2   the tiny ESM-2 after masked-residue training (15 %, 80/10/10) on the training sequences
    pretrained:llm    the tiny Llama after causal-LM training on the training texts (instruction + answer)

`configs/pretrain/tiny.yaml` holds both recipes; `resolve_pretrained(name)` builds the part into
$SEPIT_CACHE/pretrained/<name>-<hash of its recipe>/ the first time a config names it and returns the path then
on (a changed recipe builds anew). Each part starts from the tiny random model of the same seed
(`sepit.tiny.builders`), trains it with a plain loop (AdamW, linear warm-up and decay), and saves the file layout
the stages read (a fair-esm .pt, a Hugging Face folder), with `pretraining.json`: the recipe, the steps,
the items and tokens seen, the final loss and the wall time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sepit.cache import cache_dir
from sepit.configs import shipped_root
from sepit.data.errors import DataError
from sepit.tiny.corpus import RECIPE_NAME, recipes, training_samples

PARTS = ("esm2", "llm")
RECORD = "pretraining.json"


def recipe(name: str) -> dict[str, Any]:
    settings = recipes()
    if name not in PARTS or name not in settings:
        raise DataError(str(shipped_root() / RECIPE_NAME), f"has no recipe for {name!r}", f"Name one of {', '.join(PARTS)}.")
    return settings[name]


def resolve_pretrained(name: str) -> Path:
    """The pretrained part `name` (esm2 or llm), built into the cache on first use."""
    if name not in PARTS:
        raise DataError(f"pretrained:{name}", "unknown pretrained part", f"Choose pretrained:{' or pretrained:'.join(PARTS)}.")
    settings = recipe(name)
    key = hashlib.sha256(json.dumps([name, settings, recipes()["corpus"]], sort_keys=True).encode()).hexdigest()[:12]
    folder = cache_dir() / "pretrained" / f"{name}-{key}"
    if not (folder / RECORD).is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
        try:
            # The caller's random state is left as it was: a run that builds the part here trains exactly as
            # a run that finds it in the cache.
            with torch.random.fork_rng(devices=[]):
                (pretrain_esm2 if name == "esm2" else pretrain_llm)(staging, settings)
            os.rename(staging, folder)
        except OSError:  # another process finished first: same recipe, same part
            shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return folder / "esm2.pt" if name == "esm2" else folder


def _training_texts() -> tuple[list[str], list[str]]:
    """(protein sequences, instruction + answer texts) of the bundled benchmark's train splits, each once."""
    samples = training_samples()
    return (list(dict.fromkeys(s.protein.sequence for s in samples)),
            list(dict.fromkeys(f"{s.instruction}\n{s.reference}" for s in samples)))


def _schedule(optimizer: torch.optim.Optimizer, steps: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (steps - s) / max(steps - warmup, 1)))


def _train(model: torch.nn.Module, batches, settings: dict[str, Any], name: str) -> dict[str, Any]:
    """A plain training loop over `batches()` -> (loss, tokens); prints progress; -> what it saw."""
    steps = int(settings["steps"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(settings["lr"]), weight_decay=0.0)
    scheduler = _schedule(optimizer, steps, max(1, steps // 20))
    model.train()
    start, tokens, losses = time.perf_counter(), 0, []
    for step in range(steps):
        loss, count = batches()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        tokens += count
        losses.append(loss.item())
        if (step + 1) % max(1, steps // 10) == 0 or step + 1 == steps:
            recent = sum(losses[-50:]) / len(losses[-50:])
            print(f"pretraining {name}: step {step + 1}/{steps}, loss {recent:.3f}, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    share = max(1, steps // 10)
    return {"steps": steps, "items": steps * int(settings["batch_size"]), "tokens": tokens,
            "loss_first_10pc": round(sum(losses[:share]) / share, 4),
            "loss_last_10pc": round(sum(losses[-share:]) / share, 4),
            "seconds": round(time.perf_counter() - start, 1)}


def pretrain_esm2(folder: Path, settings: dict[str, Any]) -> None:
    from esm.model.esm2 import ESM2

    from sepit.models.encoder import esm2_from_checkpoint
    from sepit.tiny.builders import build_tiny_esm, save_esm2_checkpoint
    from sepit.models.warmup import IGNORE_INDEX, mask_residues

    torch.manual_seed(int(settings["seed"]))
    model: ESM2 = esm2_from_checkpoint(build_tiny_esm(folder / "random.pt", **settings["model"]))
    (folder / "random.pt").unlink()
    sequences, _ = _training_texts()
    converter = model.alphabet.get_batch_converter()
    window, batch_size = int(settings["window"]), int(settings["batch_size"])
    generator = torch.Generator().manual_seed(int(settings["seed"]))

    def batch() -> tuple[torch.Tensor, int]:
        picked = torch.randint(len(sequences), (batch_size,), generator=generator).tolist()
        _, _, tokens = converter([(str(i), sequences[i][:window]) for i in picked])
        masked, targets = mask_residues(tokens, model.alphabet, generator=generator)
        logits = model(masked)["logits"]
        loss = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX)
        return loss, int(tokens.ne(model.alphabet.padding_idx).sum())

    seen = _train(model, batch, settings, "esm2")
    save_esm2_checkpoint(model.eval(), folder / "esm2.pt")
    _record(folder, "esm2", settings, seen, len(sequences))


def pretrain_llm(folder: Path, settings: dict[str, Any]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sepit.tiny.builders import build_tiny_llm, default_answer_tokens

    answers = default_answer_tokens() if settings.get("answer_tokens") else ()
    build_tiny_llm(folder, **settings["model"], answer_tokens=answers)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    _, texts = _training_texts()
    encoded = [tokenizer(text, add_special_tokens=False)["input_ids"][: int(settings["max_tokens"]) - 2]
               for text in texts]
    batch_size = int(settings["batch_size"])
    generator = torch.Generator().manual_seed(int(settings["seed"]))

    def batch() -> tuple[torch.Tensor, int]:
        picked = torch.randint(len(encoded), (batch_size,), generator=generator).tolist()
        rows = [[tokenizer.bos_token_id, *encoded[i], tokenizer.eos_token_id] for i in picked]
        length = max(map(len, rows))
        ids = torch.full((batch_size, length), tokenizer.pad_token_id)
        mask = torch.zeros(batch_size, length, dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, :len(row)], mask[r, :len(row)] = torch.tensor(row), 1
        labels = ids.masked_fill(mask == 0, -100)
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss, int(mask.sum())

    seen = _train(model, batch, settings, "llm")
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _record(folder, "llm", settings, seen, len(texts))


def _record(folder: Path, name: str, settings: dict[str, Any], seen: dict[str, Any], corpus: int) -> None:
    record = {"part": name, "recipe": settings, "recipe_file": "configs/pretrain/tiny.yaml",
              "corpus": f"{corpus} distinct {recipes()['corpus']} training " + ("sequences" if name == "esm2" else "instruction + answer texts"),
              **seen}
    (folder / RECORD).write_text(json.dumps(record, indent=1) + "\n")


def pretraining_record(path: str | Path) -> dict[str, Any] | None:
    """What `pretraining.json` beside (or in) a pretrained part says, or None for other models."""
    path = Path(path)
    record = (path if path.is_dir() else path.parent) / RECORD
    return json.loads(record.read_text()) if record.is_file() else None
