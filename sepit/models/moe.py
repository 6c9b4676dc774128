"""Sparse upcycling of a dense Hugging Face decoder into a mixture of experts (SEPIT stage 2, docs/training.md).

`upcycle_to_moe` replaces the FFN (`mlp`) of every decoder layer by a `MoEFeedForward`: E experts that are
deep copies of the dense FFN and a fresh linear router. The trainer then adds `moe_aux_loss(model)` to the
LM loss and logs `expert_load(model)`; the settings are stored in the HF config (`MOE_CONFIG_KEY`), so a
checkpoint rebuilds its experts (`sepit.checkpoints.stage`).

Choices, stated once:
- Gate weights (`normalize_top_k=True`, our recipe) are the softmax probabilities of the selected experts
  renormalised over the top-k (as Mixtral and Qwen2-MoE with `norm_topk_prob`). For top-1 the weight is
  p/p = 1.0 exactly, so at initialisation, when all experts equal the dense FFN, the model computes exactly
  what the dense one did. The normaliser is detached, so the weight is p/stop_gradient(p): still 1.0, yet the
  LM loss trains the router through d(log p), not only the aux loss. `normalize_top_k=False` is the official
  inference's combine (its `EvalSparseMoeBlock`): the raw probability, p_top1 x expert(x)
  (docs/fidelity.md, "MoE combine").
- Padding: the HF causal LMs pass `attention_mask` by keyword to the module that owns the decoder layers; a
  forward pre-hook on that module hands the 2-D mask to every MoE layer, so padded positions count neither in
  the expert load nor in the aux loss. Padded tokens are still computed (their outputs are never used). A
  4-D or missing mask counts every token.
- Parameter counts follow the paper's "same activated parameters": `active` counts the weights that
  transform a token (all non-expert weights and top_k experts per layer), not the routers, which only pick
  experts (E x hidden per layer, 0.01 % of TinyLlama). After top-1 upcycling, active = the dense count;
  `total` counts everything, routers included.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn

from sepit.errors import InputError

MOE_CONFIG_KEY = "moe_upcycling"  # stored in the HF config, so the checkpoint describes itself


@dataclass(frozen=True)
class ExpertSettings:
    """How `upcycle_to_moe` turns each FFN into experts; stored as a dict under `MOE_CONFIG_KEY`.

    Args:
        num_experts: experts per layer, copies of the dense FFN (4 in SEPIT stage 2).
        top_k: experts per token (1).
        aux_loss_coef: load-balancing loss weight (0.01).
        router_jitter: multiplicative router-input noise in training (0: off).
        normalize_top_k: gate = p / sum of the top-k p (1 at top-1: the upcycled model starts exactly as the
            dense one); False: the raw p, as the official DeepSpeed gate and inference (docs/fidelity.md).
    """

    num_experts: int = 4
    top_k: int = 1
    aux_loss_coef: float = 0.01
    router_jitter: float = 0.0
    normalize_top_k: bool = True

    def check(self, key: str) -> None:
        """Refuse settings `upcycle_to_moe` cannot build or train with; `key` is where these sit in a config."""
        if self.num_experts < 1:
            raise InputError(f"{key}.num_experts", f"must be 1 or more, got {self.num_experts}",
                             "Set e.g. 4, as in SEPIT stage 2.")
        if not 1 <= self.top_k <= self.num_experts:
            raise InputError(f"{key}.top_k", f"must be between 1 and num_experts ({self.num_experts}), got "
                             f"{self.top_k}", "Lower top_k or raise num_experts (SEPIT stage 2: top-1 of 4).")
        if self.aux_loss_coef < 0:
            raise InputError(f"{key}.aux_loss_coef", f"must be 0 or more, got {self.aux_loss_coef}", "Set e.g. 0.01.")
        if not 0 <= self.router_jitter < 1:
            raise InputError(f"{key}.router_jitter", f"must be in [0, 1) (the noise is 1 +- jitter), got "
                             f"{self.router_jitter}", "Set 0 for none, or e.g. 0.01.")


class MoEFeedForward(nn.Module):
    """Top-k routed experts with the Switch Transformer load-balancing loss (Fedus et al. 2021, Sec. 2.2)."""

    def __init__(self, dense_ffn: nn.Module, hidden_size: int, num_experts: int, top_k: int,
                 aux_loss_coef: float, router_jitter: float, init_std: float, normalize_top_k: bool = True):
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be in [1, num_experts={num_experts}], got {top_k}")
        self.num_experts, self.top_k = num_experts, top_k
        self.aux_loss_coef, self.router_jitter = aux_loss_coef, router_jitter
        self.normalize_top_k = normalize_top_k
        weight = next(dense_ffn.parameters())
        self.router = nn.Linear(hidden_size, num_experts, bias=False, device=weight.device, dtype=weight.dtype)
        nn.init.normal_(self.router.weight, std=init_std)
        self.experts = nn.ModuleList(copy.deepcopy(dense_ffn) for _ in range(num_experts))
        # Set per forward pass: the (B, T) padding mask (by the pre-hook), the aux loss and load (for the trainer).
        self.token_mask: torch.Tensor | None = None
        self.aux_loss: torch.Tensor | None = None
        self.load: torch.Tensor | None = None
        self.record_balance = True  # off while decoding (`routing_statistics`): nothing reads them there

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        shape = hidden_states.shape  # (B, L, H)
        x = hidden_states.reshape(-1, shape[-1])  # (N, H)
        router_in = x
        if self.training and self.router_jitter > 0:  # multiplicative jitter on the router input (Switch)
            noise = torch.empty_like(x).uniform_(1 - self.router_jitter, 1 + self.router_jitter)
            router_in = x * noise
        probs = self.router_logits(router_in).softmax(dim=-1)  # (N, E)
        top_p, top_e = probs.topk(self.top_k, dim=-1)  # (N, k)
        # The denominator is held constant: same values, but the LM loss still reaches the router at top-1.
        gates = (top_p / top_p.sum(dim=-1, keepdim=True).detach() if self.normalize_top_k else top_p).to(x.dtype)

        # Assignments grouped by expert (a stable sort keeps token order within each group), so each expert takes
        # one contiguous slice: the same rows, in the same order, as selecting them expert by expert.
        flat_e = top_e.reshape(-1)  # (N*k,) assignment i belongs to token i // k
        order = torch.argsort(flat_e, stable=True)
        tokens = order // self.top_k
        inputs, weights = x.index_select(0, tokens), gates.reshape(-1, 1).index_select(0, order)
        out = torch.zeros_like(x)
        start = 0
        for e, count in enumerate(torch.bincount(flat_e, minlength=self.num_experts).tolist()):
            if count:
                part = slice(start, start + count)
                out.index_add_(0, tokens[part], self.experts[e](inputs[part]) * weights[part])
            start += count

        if self.record_balance:
            self._record_balance(probs, top_e, shape[:-1])
        return out.reshape(shape)

    def router_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, H) -> (N, E) in float32 whatever the autocast or weight dtype (Switch Sec. 2.4, selective precision),
        as the official training's DeepSpeed gate (`TopKGate`: float32 input and weight); in float32 the same
        numbers as `self.router(x)`."""
        with torch.autocast(x.device.type, enabled=False):
            if self.router.weight.dtype == torch.float32:
                return self.router(x.float())  # through the module, so its forward hooks see the logits
            return nn.functional.linear(x.float(), self.router.weight.float())  # weights cast to 16 bits

    def _record_balance(self, probs: torch.Tensor, top_e: torch.Tensor, batch_shape: torch.Size) -> None:
        keep = torch.ones(probs.shape[0], dtype=torch.bool, device=probs.device)
        if self.token_mask is not None:
            mask = self.token_mask
            if mask.shape[0] != batch_shape[0] or mask.shape[1] < batch_shape[1]:
                raise ValueError(f"token mask {tuple(mask.shape)} does not cover hidden states {tuple(batch_shape)}")
            keep = mask[:, -batch_shape[1]:].reshape(-1).bool()  # with a KV cache, the last L positions
        probs, top_e = probs[keep], top_e[keep]
        load = torch.bincount(top_e.reshape(-1), minlength=self.num_experts)  # (E,) tokens per expert (x k)
        n = max(probs.shape[0], 1)
        f = load.float() / (n * self.top_k)  # fraction of routing slots per expert
        p = probs.sum(dim=0) / n  # mean router probability per expert
        self.load = load.detach()
        self.aux_loss = self.aux_loss_coef * self.num_experts * (f * p).sum()


def _decoder_layers(model: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
    """The one ModuleList whose members all have an `mlp` (the decoder layers), and the module that owns it."""
    found = [name for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0
             and all(hasattr(layer, "mlp") for layer in m)]
    if len(found) != 1:
        raise ValueError(f"cannot upcycle {type(model).__name__}: expected one list of decoder layers with an "
                         f"`mlp` attribute, found {found}")
    return model.get_submodule(found[0].rpartition(".")[0]), model.get_submodule(found[0])


def _pass_token_mask(module: nn.Module, args: tuple, kwargs: dict) -> None:
    mask = kwargs.get("attention_mask")
    mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
    for m in module.modules():
        if isinstance(m, MoEFeedForward):
            m.token_mask = mask


def upcycle_to_moe(model: nn.Module, settings: ExpertSettings = ExpertSettings()) -> nn.Module:
    """Replace every decoder layer's FFN by `settings.num_experts` copies of it behind a new router, in place."""
    owner, layers = _decoder_layers(model)
    if any(isinstance(layer.mlp, MoEFeedForward) for layer in layers):
        raise ValueError(f"{type(model).__name__} is already upcycled")
    hidden_size = model.config.hidden_size
    init_std = getattr(model.config, "initializer_range", 0.02)
    for layer in layers:
        layer.mlp = MoEFeedForward(layer.mlp, hidden_size, settings.num_experts, settings.top_k,
                                   settings.aux_loss_coef, settings.router_jitter, init_std, settings.normalize_top_k)
    owner.register_forward_pre_hook(_pass_token_mask, with_kwargs=True)
    setattr(model.config, MOE_CONFIG_KEY, asdict(settings))
    return model


@contextlib.contextmanager
def routing_statistics(model: nn.Module, enabled: bool):
    """Within the block, every MoE FFN of `model` records its load and aux loss only if `enabled`."""
    modules = [m for m in model.modules() if isinstance(m, MoEFeedForward)]
    before = [m.record_balance for m in modules]
    for m in modules:
        m.record_balance = enabled
    try:
        yield
    finally:
        for m, state in zip(modules, before):
            m.record_balance = state


def moe_layers(model: nn.Module) -> dict[int, MoEFeedForward]:
    """The MoE FFNs by decoder-layer index."""
    _, layers = _decoder_layers(model)
    found = {i: layer.mlp for i, layer in enumerate(layers) if isinstance(layer.mlp, MoEFeedForward)}
    if not found:
        raise ValueError(f"{type(model).__name__} has no MoE layers; call upcycle_to_moe first")
    return found


def moe_aux_loss(model: nn.Module) -> torch.Tensor:
    """Sum over layers of the load-balancing losses of the latest forward pass (already times the coef)."""
    losses = [m.aux_loss for m in moe_layers(model).values()]
    if any(loss is None for loss in losses):
        raise RuntimeError("no aux loss recorded yet: run a forward pass first")
    return torch.stack(losses).sum()


def expert_load(model: nn.Module) -> dict[int, torch.Tensor]:
    """Tokens routed to each expert in the latest forward pass, (E,) per layer; sums to k x unpadded tokens."""
    return {i: m.load for i, m in moe_layers(model).items()}


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, active): active leaves out the routers and the num_experts - top_k experts a token skips."""
    total = sum(p.numel() for p in model.parameters())
    skipped = sum((m.num_experts - m.top_k) * sum(p.numel() for p in m.experts[0].parameters())
                  + m.router.weight.numel() for m in model.modules() if isinstance(m, MoEFeedForward))
    return total, total - skipped
