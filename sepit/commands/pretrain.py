"""`sepit pretrain`: build the pretrained tiny parts (and the tiny models they start from) into $SEPIT_CACHE.

The demo runs it as its own step before the fits, so every `sepit fit` finds its parts built and trains the
same way on a fresh machine as on a second run.
"""

from __future__ import annotations


def pretrain(parts: list[str] | None = None) -> None:
    """Build the parts of configs/pretrain/tiny.yaml that are not in the cache yet, and print where they are.

    Args:
        parts: which parts (esm2, llm); default all.
    """
    from sepit.tiny.pretrained import PARTS, pretraining_record
    from sepit.model_paths import TINY_MODELS, resolve_model_path

    for name in TINY_MODELS:  # the random tiny models (the caption encoder among them)
        resolve_model_path(f"tiny:{name}")
    for name in parts or PARTS:
        path = resolve_model_path(f"pretrained:{name}")
        record = pretraining_record(path) or {}
        print(f"pretrained:{name}: {path} ({record.get('steps')} steps, {record.get('items')} items, "
              f"loss {record.get('loss_first_10pc')} -> {record.get('loss_last_10pc')}, {record.get('seconds')} s)")
