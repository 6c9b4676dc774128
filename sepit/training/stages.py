"""SEPIT's three training stages as LightningModules (docs/training.md), run with `sepit fit --config ...`.

    stage 0  WarmupStage                 encoder + structure module: CLIP + masked-residue LM + denoising
    stage 1  InstructionStage            projector + LLM on captions; encoder at 0.1x lr, structure dropped 15 %
    stage 2  InstructionStage(experts=...) every LLM FFN upcycled into experts; all instructions; encoder frozen

The trainable baselines are `InstructionStage` configs too (`configs/baselines/`): no structure (pLM +
projector), a Q-Former projector, the sequence as text in the prompt (no encoder), LoRA instead of full
fine-tuning. Each stage starts from the previous stage's checkpoint (`init_from`). Checkpoints describe themselves
(`sepit.checkpoints.stage`): the architecture record inside, the tokenizer beside, so
`sepit bench --model <checkpoint>` needs nothing else.

Optimisation: AdamW, linear warm-up over `warmup_ratio` of the steps, then `schedule`: cosine decay to 0 (the
default) or linear decay to 0 (the official trainer's, Hugging Face's default; the paper configs use it:
docs/fidelity.md, "LR schedule"); per-group learning-rate scales for the parts the paper trains faster or
slower.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Literal

import lightning as L
from lightning.pytorch.strategies import FSDPStrategy
import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from sepit.checkpoints.stage import (CHECKPOINT_FORMAT, TOKENIZER_DIR, encoder_record, extend_llm, load_into,
                                     model_record, read_stage_checkpoint, save_tokenizer)
from sepit.data.protein import ESM2_WINDOW
from sepit.errors import InputError
from sepit.models.encoder import StructureAwareESM, esm2_from_checkpoint
from sepit.models.formatters import check_format
from sepit.models.lora import ADAPTER_DIR, LoraSettings, save_adapter
from sepit.models.moe import ExpertSettings, expert_load, moe_aux_loss
from sepit.models.network import LossAverage, SplicedLanguageModel, TextLanguageModel
from sepit.models.qformer import QFormerSettings
from sepit.models.tokens import TokenEmbeddingSettings
from sepit.model_paths import resolve_model_path
from sepit.models.warmup import CaptionEncoder, WarmupObjectives
from sepit.training.data import ItemBatch
from sepit.training.settings import EncoderSettings, OptimizerSettings, Schedule, plain_hparams


def warmup_decay(warmup_steps: int, total_steps: int, schedule: Schedule = "cosine", from_zero: bool = False):
    """Learning-rate factor per optimizer step: linear warm-up to 1, (step + 1) / warmup_steps, or with `from_zero`
    step / warmup_steps (0 at the first step, as Hugging Face's `get_linear_schedule_with_warmup`), then cosine or
    linear decay to 0 at `total_steps`."""
    if schedule not in ("cosine", "linear"):
        raise ValueError(f"schedule must be 'cosine' or 'linear', got {schedule!r}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step if from_zero else step + 1) / warmup_steps
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        return 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


MODEL = "model.init_args"  # where a stage's own settings sit in a `sepit fit` config


def check_settings(window: int, spliced: bool, **groups: Any) -> None:
    """The window and each settings group (`LoraSettings.check`, ...), checked before any model loads, so a bad
    value ends in one message naming its config key (`model.init_args.lora.r`). None is a group left unset."""
    limit = ESM2_WINDOW if spliced else None  # a text-only LLM's window is only where the sequence is cut
    if window < 1 or (limit and window > limit):
        raise InputError(f"{MODEL}.window", f"residues kept per protein must be 1 or more"
                         + (f" and at most ESM-2's {limit}" if limit else "") + f", got {window}",
                         f"Set e.g. {ESM2_WINDOW} (ESM-2's window), or less to save memory.")
    for name, group in groups.items():
        if group is not None:
            group.check(f"{MODEL}.{name}")


def adopt_kernel_epsilon(encoder: StructureAwareESM, record: dict[str, Any]) -> None:
    """Continue with the kernel width the checkpoint's weights learned (1e-2 before it was recorded)."""
    encoder.structure.kernel_epsilon = record.get("encoder", {}).get("kernel_epsilon", 1e-2)


class _Stage(L.LightningModule):
    """What every stage shares: AdamW with warm-up and decay over scaled parameter groups, and the
    architecture record in each checkpoint."""

    stage: int

    def __init__(self) -> None:
        super().__init__()
        # What this run has trained so far (over resumes): optimizer steps, items, wall seconds in `fit`.
        self._trained = {"steps": 0, "items": 0, "seconds": 0.0}
        self._clock: float | None = None  # when this process's `fit` started

    def parameter_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        """(parameters, learning-rate scale) pairs; frozen parameters and scale-0 groups are left out."""
        raise NotImplementedError

    def architecture(self) -> dict[str, Any]:
        raise NotImplementedError

    optimizer_settings: OptimizerSettings

    def _save_settings(self, optimizer: OptimizerSettings) -> None:
        """Keep the optimizer settings, and the hyperparameters (already saved) as plain types."""
        self.optimizer_settings = optimizer
        plain_hparams(self.hparams)

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.optimizer_settings
        groups = [{"params": [p for p in params if p.requires_grad], "lr": o.lr * scale}
                  for params, scale in self.parameter_groups() if scale > 0]
        groups = [g for g in groups if g["params"]]
        optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = math.ceil(o.warmup_ratio * total)  # Hugging Face's warm-up length; ours lasts at least a step
        warmup = warmup if o.warmup_from_zero else max(warmup, 1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_decay(warmup, total, o.schedule,
                                                                              o.warmup_from_zero))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """`trainer.gradient_clip_val` under FSDP too: Lightning refuses to clip sharded gradients by norm, while
        FSDP's own `clip_grad_norm_` computes the norm over all shards."""
        if gradient_clip_val and isinstance(self.trainer.strategy, FSDPStrategy) \
                and gradient_clip_algorithm in (None, "norm"):
            self.trainer.model.clip_grad_norm_(gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_train_start(self) -> None:
        self._clock = time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self._trained["items"] += len(batch) * self.trainer.world_size

    def training_record(self) -> dict[str, Any]:
        """Steps, items and wall time of training, and where the pretrained parts came from (the demo's card)."""
        seconds = self._trained["seconds"] + (time.perf_counter() - self._clock if self._clock is not None else 0)
        parts = {name: str(getattr(self.hparams, name)) for name in ("esm", "llm", "text_encoder", "init_from")
                 if getattr(self.hparams, name, None)}
        return {**self._trained, "steps": int(self.global_step), "seconds": round(seconds, 1), "parts": parts}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["sepit"] = {"format": CHECKPOINT_FORMAT, "stage": self.stage, **self.architecture(),
                               "training": self.training_record()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A resumed run keeps the kernel width its weights were trained with, and counts on from its totals."""
        encoder = self.model.encoder if hasattr(self, "model") else self.objectives.encoder
        record = checkpoint.get("sepit")
        if encoder is not None and isinstance(record, dict):
            adopt_kernel_epsilon(encoder, record)
        if isinstance(record, dict) and isinstance(record.get("training"), dict):
            self._trained = {key: record["training"].get(key, 0) for key in ("steps", "items", "seconds")}


class WarmupStage(_Stage):
    """Stage 0: the encoder and its structure module learn from captions, masked residues and noisy coordinates."""

    stage = 0

    def __init__(self, esm: str, text_encoder: str, num_kernels: int = 128, window: int = 1022,
                 projection_dim: int = 512, mask_rate: float = 0.15, noise_scale: float = 0.2,
                 temperature: float = 0.07, new_module_lr_scale: float = 10.0,
                 optimizer: OptimizerSettings = OptimizerSettings(lr=1e-6)):
        """
        Args:
            esm: a released fair-esm ESM-2 file (e.g. esm2_t33_650M_UR50D.pt) or tiny:esm2.
            text_encoder: a local Hugging Face encoder folder for the captions (frozen), or tiny:text_encoder.
            num_kernels: Gaussian distance kernels of the structure module (128 in the paper).
            window: residues kept per protein (1022 for ESM-2; less saves memory in small runs).
            projection_dim: CLIP projection width (512).
            mask_rate: share of residues masked for the masked-residue loss (0.15).
            noise_scale: coordinate noise in Å per unit Gaussian (0.2).
            temperature: initial CLIP temperature (0.07, learnable).
            new_module_lr_scale: learning-rate factor of the new modules (structure, heads, projections): 10.
            optimizer: its lr is ESM-2's (1e-6 in the paper, the default here).
        """
        check_settings(window, spliced=True, optimizer=optimizer)
        if not 0 < mask_rate < 1:
            raise InputError(f"{MODEL}.mask_rate", f"is the share of residues masked, got {mask_rate}",
                             "Set a value between 0 and 1, e.g. 0.15 (the paper).")
        super().__init__()
        self.save_hyperparameters()
        self._save_settings(optimizer)
        encoder = StructureAwareESM(esm2_from_checkpoint(resolve_model_path(esm)), num_kernels, window=window)
        encoder.esm.contact_head.requires_grad_(False)  # no objective uses it
        self.objectives = WarmupObjectives(encoder, CaptionEncoder(resolve_model_path(text_encoder)),
                                           projection_dim, mask_rate, noise_scale, temperature)

    def _losses(self, batch: ItemBatch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return self.objectives([pair.protein for pair in batch], [pair.caption for pair in batch], generator)

    def training_step(self, batch: ItemBatch, batch_idx: int) -> torch.Tensor:
        losses = self._losses(batch)
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=len(batch))
        self.log_dict({f"train/{name}": value for name, value in losses.items() if name != "loss"},
                      batch_size=len(batch))
        return losses["loss"]

    def _evaluate(self, batch: ItemBatch, batch_idx: int, split: str) -> None:
        # The same masks and noise at every evaluation, so the numbers compare across epochs.
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        losses = self._losses(batch, generator)
        self.log_dict({f"{split}/{name}": value for name, value in losses.items()}, batch_size=len(batch),
                      sync_dist=True, prog_bar=False)

    def validation_step(self, batch: ItemBatch, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: ItemBatch, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def parameter_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        pretrained = list(self.objectives.encoder.esm.parameters())
        known = {id(p) for p in pretrained}
        new = [p for p in self.parameters() if id(p) not in known]
        return [(pretrained, 1.0), (new, self.hparams.new_module_lr_scale)]

    def architecture(self) -> dict[str, Any]:
        return encoder_record(self.objectives.encoder)


class InstructionStage(_Stage):
    """Stages 1 and 2: instruction tuning of the projector and the LLM (with `experts` set, upcycled to MoE)."""

    def __init__(self, llm: str, esm: str | None, init_from: str | None = None, window: int = 1022,
                 encoder: EncoderSettings = EncoderSettings(),
                 projector: Literal["mlp", "linear", "qformer"] = "mlp", qformer: QFormerSettings = QFormerSettings(),
                 sequence_format: str = "galactica", experts: ExpertSettings | None = None,
                 lora: LoraSettings | None = None, optimizer: OptimizerSettings = OptimizerSettings(),
                 loss_average: LossAverage = "tokens",
                 token_embeddings: TokenEmbeddingSettings = TokenEmbeddingSettings()):
        """
        Args:
            llm: a local Hugging Face causal-LM folder (with its tokenizer), or tiny:llm.
            esm: a released fair-esm ESM-2 file or tiny:esm2 (the architecture; weights come from init_from);
                null for an LLM that reads the sequence as text (`sequence_format`).
            init_from: the previous stage's checkpoint: stage 0's for stage 1 (the encoder), stage 1's for
                stage 2 (encoder, projector and LLM). None starts from the released weights (baselines).
            window: residues kept per protein (also the sequence-as-text cut).
            encoder: the encoder's kernels, structure dropping and learning-rate factor (`EncoderSettings`).
            projector: mlp (2 layers, GELU; the official code), linear (the paper's text), or qformer
                (learned queries cross-attending to the residues; ProtT3), shaped by `qformer`.
            qformer: the Q-Former's queries, layers and heads (`QFormerSettings`; projector: qformer only).
            sequence_format: how a text-only model sees the sequence: galactica, seq_equals, raw or bop
                (`sepit.models.formatters`).
            experts: null for a dense LLM (stage 1); else every FFN is upcycled into experts (`ExpertSettings`;
                4 experts, top-1 in stage 2).
            lora: null fine-tunes the whole LLM; else the LLM is frozen and LoRA adapters train (peft;
                `LoraSettings`), with esm: null only.
            optimizer: learning rate (of the projector and the LLM), weight decay, warm-up and decay
                (`OptimizerSettings`).
            loss_average: "tokens", the mean over every answer token of the batch (the official model's loss), or
                "answers", each answer's mean and then their mean, so a one-token closed answer weighs as much as
                a long open one (`ProteinLanguageModel.forward`).
            token_embeddings: how the LLM's embedding tables grow for the added tokens: their new rows' init and
                the padding of the tables (`TokenEmbeddingSettings`; the paper configs: the official code's).
        """
        super().__init__()
        self.save_hyperparameters()
        self._save_settings(optimizer)
        self.stage = 2 if experts else 1
        self.encoder_settings, self.experts, self.lora = encoder, experts, lora
        check_settings(window, esm is not None, encoder=encoder, qformer=qformer, experts=experts, lora=lora,
                       optimizer=optimizer, token_embeddings=token_embeddings)
        check_format(sequence_format, f"{MODEL}.sequence_format")
        if esm is None and init_from is not None:
            raise InputError(f"{MODEL}.init_from", "a model that reads the sequence as text starts from the LLM "
                             "folder (llm); init_from is for encoder and stage checkpoints", "Leave init_from out.")
        if esm is not None and lora:
            # peft would freeze the embedding table, and with it the new <bop>/<eop> rows the splice relies on.
            raise InputError(f"{MODEL}.lora", "LoRA is for LLMs that read the sequence as text (esm: null); a "
                             "spliced encoder needs its new <bop>/<eop> embeddings trained",
                             "Set lora: null to fine-tune the LLM fully, or esm: null for a text-only LLM.")
        if experts and lora:
            raise InputError(f"{MODEL}.lora", "choose experts (MoE upcycling, full fine-tuning) or LoRA, not both",
                             "Set lora: null or experts: null.")
        if esm is None and projector == "qformer":
            raise InputError(f"{MODEL}.projector", "qformer needs a protein encoder (esm); with esm: null the "
                             "sequence is text", "Set projector: mlp, or give esm.")
        llm_path = resolve_model_path(llm)
        tokenizer = AutoTokenizer.from_pretrained(llm_path, local_files_only=True, trust_remote_code=False)
        # float32 master weights whatever dtype the folder was saved in (TinyLlama's config says bfloat16):
        # bf16 compute comes from `trainer.precision`, and FSDP needs one dtype per shard.
        language_model = AutoModelForCausalLM.from_pretrained(llm_path, local_files_only=True,
                                                              trust_remote_code=False, dtype=torch.float32)
        # from_pretrained hands back eval mode, and Lightning keeps each submodule's mode: without this the LLM
        # (its dropout, LoRA's dropout, the router jitter) would train in eval mode.
        language_model.train()
        protein_encoder = None if esm is None else StructureAwareESM(
            esm2_from_checkpoint(resolve_model_path(esm)), encoder.num_kernels, encoder.sequence_only,
            encoder.drop_structure_rate, window=window)
        self.model = TextLanguageModel(language_model, tokenizer, sequence_format, window, token_embeddings) \
            if protein_encoder is None else SplicedLanguageModel(protein_encoder, language_model, tokenizer, projector,
                                                                 qformer if projector == "qformer" else None,
                                                                 token_embeddings)
        if init_from is not None:
            self._start_from(init_from)
        extend_llm(self.model, experts, lora)
        if protein_encoder is not None:
            for parameter in protein_encoder.parameters_unused_by_features():
                parameter.requires_grad_(False)
            if encoder.lr_scale == 0:
                protein_encoder.requires_grad_(False)

    def _start_from(self, path: str) -> None:
        wanted = (1,) if self.stage == 2 else (0,)
        record, state = read_stage_checkpoint(path, wanted)
        if record.get("official") or record.get("encoder", {}).get("bias_masking", "observed") != "observed":
            raise InputError(path, "is a converted official checkpoint, which this suite evaluates but does not "
                             "train on (its layout is the official inference's)", "Start from a checkpoint of "
                             "`sepit fit`.")
        if self.model.encoder is not None:
            adopt_kernel_epsilon(self.model.encoder, record)
        if record["stage"] == 0:
            load_into(self.model.encoder, state, "objectives.encoder.", path)
        else:
            load_into(self.model, state, "model.", path)

    def _checkpoint_dirs(self) -> list[Path]:
        return [Path(c.dirpath) for c in self.trainer.checkpoint_callbacks if c.dirpath]

    def on_fit_start(self) -> None:
        """Save the tokenizer (with the protein tokens) beside the checkpoints, before the first one exists."""
        if self.trainer.is_global_zero:
            for directory in self._checkpoint_dirs():
                save_tokenizer(self.model.tokenizer, directory / TOKENIZER_DIR)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """With LoRA, also the adapter as a peft folder (`adapter/` beside the checkpoints: the latest save's),
        with the prompt settings it was trained with."""
        super().on_save_checkpoint(checkpoint)
        if self.lora and self.trainer.is_global_zero:
            for directory in self._checkpoint_dirs():
                save_adapter(self.model.llm, checkpoint["state_dict"], "model.llm.", directory / ADAPTER_DIR,
                             {"sequence_format": self.model.sequence_format, "max_residues": self.model.max_residues})

    def _loss(self, batch: ItemBatch, split: str) -> torch.Tensor:
        lm_loss = self.model(self.model.collate(batch), self.hparams.loss_average)
        losses = {"loss": lm_loss}
        if self.experts:
            aux = moe_aux_loss(self.model.llm)
            losses = {"loss": lm_loss + aux, "lm_loss": lm_loss, "aux_loss": aux}
        self.log(f"{split}/loss", losses["loss"], prog_bar=split == "train", batch_size=len(batch),
                 sync_dist=split != "train")
        self.log_dict({f"{split}/{name}": value for name, value in losses.items() if name != "loss"},
                      batch_size=len(batch), sync_dist=split != "train")
        if self.experts and split == "train":
            self._log_expert_load(len(batch))
        return losses["loss"]

    def _log_expert_load(self, batch_size: int) -> None:
        """Share of the routed tokens per expert and layer, and the imbalance: the busiest expert's share x E
        (1 = perfectly balanced, E = one expert takes everything), averaged over layers."""
        shares = {layer: load.float() / load.sum().clamp(min=1) for layer, load in expert_load(self.model.llm).items()}
        metrics = {f"expert_load/layer{layer}/expert{e}": share[e] for layer, share in shares.items()
                   for e in range(len(share))}
        metrics["train/expert_imbalance"] = torch.stack([s.max() * len(s) for s in shares.values()]).mean()
        self.log_dict(metrics, batch_size=batch_size)

    def training_step(self, batch: ItemBatch, batch_idx: int) -> torch.Tensor:
        return self._loss(batch, "train")

    def validation_step(self, batch: ItemBatch, batch_idx: int) -> None:
        self._loss(batch, "val")

    def test_step(self, batch: ItemBatch, batch_idx: int) -> None:
        self._loss(batch, "test")

    def parameter_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        if self.model.encoder is None:
            return [(list(self.model.llm.parameters()), 1.0)]
        return [(list(self.model.encoder.parameters()), self.encoder_settings.lr_scale),
                (list(self.model.projector.parameters()) + list(self.model.llm.parameters()), 1.0)]

    def architecture(self) -> dict[str, Any]:
        return model_record(self.model, self.lora)
