"""`sepit fit|validate|test --config configs/...yaml`: Lightning's CLI over any LightningModule and
LightningDataModule named in the config (`class_path` + `init_args`), so every override works on the command
line (`--trainer.max_steps 10`, `--model.init_args.optimizer.lr 3e-4`) and `--print_config` shows the resolved config."""

from __future__ import annotations

import warnings

import lightning as L
from lightning.pytorch.cli import LightningCLI

from sepit.configs import rewrite_config_arguments
from sepit.quiet import quiet_lightning


def run(argv: list[str]) -> None:
    # Frozen parts (the stage-0 caption encoder) stay in eval mode on purpose.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")  # argv is the command line
    quiet_lightning()
    LightningCLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                 auto_configure_optimizers=False,  # each stage owns its optimizer (groups, warm-up, schedule)
                 save_config_kwargs={"overwrite": True},  # a resumed run rewrites its config.yaml
                 args=rewrite_config_arguments(argv),
                 parser_kwargs={"prog": "sepit", "exit_on_error": False})  # sepit.cli prints a one-line error
