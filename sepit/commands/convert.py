"""`sepit convert official SRC OUT.ckpt`: an official SEPIT checkpoint folder -> a checkpoint `sepit bench` reads.

    sepit convert official released/SEPIT-1.1B runs/official/sepit.ckpt
    sepit bench --model runs/official/sepit.ckpt --tasks sp14 --output runs/official/bench

The converter itself is `sepit.checkpoints.convert`.
"""

from __future__ import annotations

from pathlib import Path


def official(src: Path, out: Path) -> None:
    """Convert an official SEPIT checkpoint folder (`save_pretrained` layout, model_type pit) into OUT.ckpt.

    Args:
        src: the official checkpoint folder, as released or as the official (DeepSpeed) training saved it.
        out: the .ckpt to write; its folder also receives tokenizer/ (give each converted model its own folder).
    """
    from sepit.checkpoints.convert import convert_official, report

    print(report(convert_official(src, out), Path(out)))
