"""Greedy decoding with continuous batching over a pre-allocated KV cache (docs/architecture.md, "generation").

Hugging Face's batched `generate` decodes a batch until its longest answer ends, grows the KV cache with a
`cat` per step and rebuilds the attention mask every step. Here a fixed number of slots decode together; a
row that has said eos leaves at once and the next waiting prompt takes its slot (its prefill runs with those of
the other newcomers). Waiting prompts are taken longest first, so newcomers padded together have similar lengths.

The cache holds, per layer, keys transposed (slots, kv heads, head dim, capacity) and values (slots, kv heads,
capacity, head dim): a step's scores are one batched product over contiguous key rows. Every row is right-aligned
at one shared write column `c`: a newcomer's prefill fills columns [c - P, c) of its slot (its tokens first,
then its padding, so that the prefill attends in the kernel's causal mode with no mask), every decode step
writes column c of every live slot, and a per-slot mask says which columns hold that row's tokens. The R live
rows always hold the first R slots (a finished row's slot takes the last live row), so a step reads and writes
views of the buffers, never a gathered copy. When `c` reaches the end, the rows are shifted left past the
columns no row uses.

The decoder layers, their attention (rotary embedding, GQA) and their FFNs (MoE ones included) are the model's
own modules, called with a small cache object in place of Hugging Face's. The prefill runs the model's own
attention kernel (sdpa in its causal mode, as `generate` runs it for one prompt alone); a decoding step's
attention is ours: the eager kernel's arithmetic on the transposed keys (`_step_attention`, in transformers'
table of attention kernels; with numpy's argmax, `greedy_tokens`, a tiny-model step on the CPU takes 9 % less
time, BENCHMARKS.md "Generation"; on a GPU it is not measured yet).
Besides that kernel, only the bookkeeping is ours. Greedy answers equal one-sample-at-a-time `generate` in
float32 on the CPU (tests/test_decoding.py, bench/generation.py); in bf16 a near-tie between two tokens can
flip with the batch's shapes, as it can between HF's own batched and single `generate`. Models of other
layouts, sampling, and generation configs with logits processors go through `generate` instead (`supports`);
there `ChosenTokenLogprobs` records the chosen tokens' log-probabilities.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

# Decoder layers of these model types are called as LlamaDecoderLayer is (pre-norm, rotary, full attention),
# with these attention kernels (both take the additive 4-D mask) and rotary embeddings that do not depend on
# the longest sequence of the batch.
SUPPORTED_MODEL_TYPES = frozenset({"llama"})
SUPPORTED_ATTENTION = frozenset({"sdpa", "eager"})
SUPPORTED_ROPE = frozenset({None, "default", "linear", "llama3"})
# Generation-config fields whose non-default values add logits processors that this loop does not apply.
_PROCESSOR_FIELDS = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0,
                     "bad_words_ids": None, "min_length": 0, "min_new_tokens": None, "forced_bos_token_id": None,
                     "forced_eos_token_id": None, "suppress_tokens": None, "begin_suppress_tokens": None,
                     "sequence_bias": None, "exponential_decay_length_penalty": None, "renormalize_logits": False,
                     "diversity_penalty": 0.0, "num_beams": 1, "guidance_scale": None, "watermarking_config": None,
                     "remove_invalid_values": False, "stop_strings": None, "max_time": None}


def _base_model(llm: nn.Module) -> nn.Module:
    """The causal LM under a peft wrapper (its LoRA layers are inside it)."""
    return llm.get_base_model() if hasattr(llm, "get_base_model") else llm


def supports(llm: nn.Module) -> bool:
    """Whether this loop reproduces `llm.generate`'s greedy decoding: a Llama-layout decoder (MoE FFNs allowed)
    with an sdpa or eager attention kernel and static rotary frequencies, whose generation config adds no
    logits processor or stopping rule besides eos and the length."""
    base = _base_model(llm)
    config = base.config
    rope = (getattr(config, "rope_scaling", None) or getattr(config, "rope_parameters", None) or {})
    if (getattr(config, "model_type", None) not in SUPPORTED_MODEL_TYPES
            or getattr(config, "_attn_implementation", None) not in SUPPORTED_ATTENTION
            or rope.get("rope_type", rope.get("type")) not in SUPPORTED_ROPE):
        return False
    if not all(hasattr(base, name) for name in ("model", "lm_head")):
        return False
    generation = getattr(base, "generation_config", None)
    # transformers 5 leaves unset fields None; 4.x writes their defaults.
    return generation is None or all(getattr(generation, field, None) in (None, default)
                                     for field, default in _PROCESSOR_FIELDS.items())


class _SlotCache:
    """Stands in for Hugging Face's cache inside the attention modules: `update` stores the new keys and values
    of a layer and returns what the queries attend to (the model calls it once per layer)."""

    def __init__(self):
        self.write: Callable[[int, Tensor, Tensor], tuple[Tensor, Tensor]] | None = None  # set per forward

    def update(self, key_states: Tensor, value_states: Tensor, layer_idx: int, *args, **kwargs):
        return self.write(layer_idx, key_states, value_states)


def _cache_keyword(layer: nn.Module) -> str:
    """The name under which this transformers version's decoder layer takes its cache."""
    names = inspect.signature(layer.forward).parameters
    return next(name for name in ("cache", "past_key_values", "past_key_value") if name in names)


class ContinuousDecoder:
    """Greedy decoding of many prompts with `slots` rows at a time (module docstring)."""

    def __init__(self, llm: nn.Module, eos_token_id: int, max_new_tokens: int, slots: int,
                 logprobs: bool = False, refill_fraction: float = 0.25):
        """`refill_fraction`: newcomers are prefilled once this share of the slots is free (or nothing decodes),
        so that each prefill serves several of them."""
        if slots < 1 or max_new_tokens < 1:
            raise ValueError(f"slots and max_new_tokens must be >= 1, got {slots} and {max_new_tokens}")
        self.base = _base_model(llm)
        self.decoder = self.base.model
        self.layers = list(self.decoder.layers)[: self.base.config.num_hidden_layers]
        self.cache_keyword = _cache_keyword(self.layers[0])
        self.eos, self.max_new_tokens, self.slots = eos_token_id, max_new_tokens, slots
        self.logprobs = logprobs
        self.refill_at = max(1, int(slots * refill_fraction))

    # --- the model's own layers, with our cache ---------------------------------------------------------
    def _layers(self, hidden: Tensor, mask: Tensor | None, position_ids: Tensor, cache: _SlotCache,
                last: Tensor | None = None) -> Tensor:
        """hidden (R, q, H), additive mask (R, 1, q, keys) or None for the kernel's causal mode, position_ids
        (R, q), `last` (R,) each row's last position (default: the last column) -> the logits there (R, V)."""
        embeddings = self.decoder.rotary_emb(hidden, position_ids)
        for layer in self.layers:
            hidden = layer(hidden, attention_mask=mask, position_ids=position_ids, position_embeddings=embeddings,
                           **{self.cache_keyword: cache})
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        hidden = hidden[:, -1] if last is None else hidden[torch.arange(len(hidden), device=hidden.device), last]
        return self.base.lm_head(self.decoder.norm(hidden)).float()

    # --- the run --------------------------------------------------------------------------------------
    @torch.no_grad()
    def run(self, lengths: Sequence[int], embed: Callable[[list[int]], tuple[Tensor, Tensor]]
            ) -> list[tuple[Tensor, Tensor | None]]:
        """`lengths[i]`: prompt i's spliced length (it orders the queue); `embed(indices)` -> those prompts'
        inputs_embeds (n, P, H) left-padded and attention mask (n, P). -> per prompt, the new token ids (up to
        and including eos) and, with `logprobs`, their log-probabilities."""
        queue = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
        tokens: list[list[int]] = [[] for _ in lengths]
        scores: list[list[float]] = [[] for _ in lengths]
        state = _State(self, self.base.get_input_embeddings().weight)
        at = 0
        while at < len(queue) or state.rows:
            free = self.slots - len(state.rows)
            if at < len(queue) and (free >= self.refill_at or not state.rows or len(queue) - at <= free):
                group = queue[at:at + free]
                at += len(group)
                logits = self._prefill(state, group, *embed(group))
                rows = group
            else:
                rows = list(state.rows)  # slot order
                logits = self._step(state, len(rows))
            chosen, finished = self._take(logits, rows, tokens, scores)
            self._place(state, rows, chosen, finished)
        return [(torch.tensor(t, dtype=torch.long), torch.tensor(s) if self.logprobs else None)
                for t, s in zip(tokens, scores)]

    def _take(self, logits: Tensor, rows: list[int], tokens, scores) -> tuple[Tensor, list[bool]]:
        """Append each row's greedy token (and its log-probability); -> the tokens, whether each row is done."""
        chosen = greedy_tokens(logits)
        if self.logprobs:
            picked = logits.log_softmax(dim=-1).gather(1, chosen[:, None]).squeeze(1).tolist()
        done = []
        for j, (row, token) in enumerate(zip(rows, chosen.tolist())):
            tokens[row].append(token)
            if self.logprobs:
                scores[row].append(picked[j])
            done.append(token == self.eos or len(tokens[row]) >= self.max_new_tokens)
        return chosen, done

    @staticmethod
    def _place(state: "_State", rows: list[int], chosen: Tensor, finished: list[bool]) -> None:
        """Every row's next input (`rows` hold consecutive slots), then finished rows free their slots."""
        first = state.slot_of[rows[0]]
        state.next_input[first:first + len(rows)] = chosen
        for row, done in zip(rows, finished):
            if done:
                state.release(row)  # moves the last live row, next input included, into the freed slot

    def _prefill(self, state: "_State", group: list[int], inputs_embeds: Tensor, attention_mask: Tensor) -> Tensor:
        """The group's prompts into the free slots -> the logits of each one's last token. Left-padded rows are
        moved to the front of their columns (`_to_front`): then their tokens attend causally with no padding
        before them, which the sdpa kernel does in its causal mode (no mask; it skips the blocks above the
        diagonal, as for one prompt alone) instead of through a (n, P, P) mask."""
        n, P, _ = inputs_embeds.shape
        state.ensure(P)
        inputs_embeds, mask, at_front = _to_front(inputs_embeds, attention_mask.bool())
        new = state.admit(group, mask)  # the slots after the live ones
        c = state.column
        position_ids = position_ids_from_mask(mask)
        if at_front and self.base.config._attn_implementation == "sdpa":
            additive = None  # Llama's sdpa kernel is causal without a mask; padding after a row never precedes it
        else:
            causal = torch.ones(P, P, dtype=torch.bool, device=mask.device).tril()
            allowed = causal[None] & mask[:, None, :]  # (n, P, P): earlier real tokens
            additive = _additive(allowed[:, None], inputs_embeds.dtype)

        def write(layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
            state.keys[layer][new, :, :, c - P:c] = k.transpose(2, 3).to(state.keys[layer].dtype)
            state.values[layer][new, :, c - P:c] = v.to(state.values[layer].dtype)
            return k, v

        state.cache.write = write
        last = mask.sum(dim=1) - 1 if at_front else None  # with left padding the last column is every row's last
        logits = self._layers(inputs_embeds, additive, position_ids, state.cache, last)
        state.position[new] = position_ids.amax(dim=1) + 1
        return logits

    def _step(self, state: "_State", live: int) -> Tensor:
        """One new token for each of the `live` rows (the first slots)."""
        if state.column >= state.capacity:
            state.compact()
        c, lo = state.column, state.first_column()
        state.valid[:live, c] = True
        hidden = self.decoder.embed_tokens(state.next_input[:live])[:, None]  # (R, 1, H)
        mask = _additive(state.valid[:live, None, None, lo:c + 1], hidden.dtype)  # (R, 1, 1, c + 1 - lo)
        position_ids = state.position[:live, None]

        def write(layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
            keys, values = state.keys[layer][:live], state.values[layer][:live]
            keys[:, :, :, c] = k[:, :, 0]
            values[:, :, c] = v[:, :, 0]
            return keys[:, :, :, lo:c + 1], values[:, :, lo:c + 1]

        state.cache.write = write
        with _attention_kernel(self.base.config, STEP_ATTENTION):
            logits = self._layers(hidden, mask, position_ids, state.cache)
        state.position[:live] += 1
        state.column += 1
        return logits


STEP_ATTENTION = "sepit_decoding_step"


def _step_attention(module: nn.Module, query: Tensor, keys_t: Tensor, values: Tensor, attention_mask: Tensor,
                    scaling: float, dropout: float = 0.0, **kwargs) -> tuple[Tensor, None]:
    """The attention of a decoding step: query (R, heads, 1, d) against the cache's keys stored transposed
    (R, kv heads, d, W) and values (R, kv heads, W, d), additive mask (R, 1, 1, W). The eager kernel's
    arithmetic (scores times the scaling, plus the mask, float32 softmax), with each kv head's query heads
    as rows of one product instead of repeated keys. -> (R, 1, heads, d), as the kernels return."""
    R, heads, _, d = query.shape
    kv = keys_t.shape[1]
    q = query.reshape(R, kv, heads // kv, d)  # query head h reads kv head h // (heads // kv), as repeat_kv
    scores = torch.matmul(q, keys_t) * scaling + attention_mask  # (R, kv, groups, W)
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(values.dtype)
    return torch.matmul(weights, values).reshape(R, 1, heads, d), None


ALL_ATTENTION_FUNCTIONS[STEP_ATTENTION] = _step_attention  # the table Llama's attention reads its kernel from


@contextlib.contextmanager
def _attention_kernel(config, name: str):
    """The model's attention modules use the kernel `name` within the block (they read it from the config, which
    they share). Not thread-safe: another forward pass of the same model meanwhile would use it too."""
    before = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = before


def greedy_tokens(logits: Tensor) -> Tensor:
    """logits (R, V) -> each row's first index of its maximum, exactly `logits.argmax(-1)` (NaN counts as the
    maximum in both). On the CPU numpy's vectorised argmax does it: 11 vs 110 us at 32 x 4,015 logits, about 4 %
    of a decoding step of the tiny model (BENCHMARKS.md, "Generation")."""
    if logits.device.type == "cpu" and logits.dtype == torch.float32:
        return torch.from_numpy(logits.detach().numpy().argmax(-1)).long()
    return logits.argmax(dim=-1)


def _to_front(inputs_embeds: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, bool]:
    """Rows whose padding all comes before their tokens (left padding) -> the same rows with their tokens first
    and the padding after them, and True; rows with padding among their tokens come back as they are, and False.
    A row's tokens then hold columns 0..n-1 as when it is alone."""
    P = mask.shape[1]
    columns = torch.arange(P, device=mask.device)
    padding = (~mask).sum(dim=1, keepdim=True)  # (n, 1)
    if torch.equal(mask, columns < P - padding):  # already first (no padding at all, or right padding)
        return inputs_embeds, mask, True
    if not torch.equal(mask, columns >= padding):
        return inputs_embeds, mask, False
    index = (columns + padding) % P  # (n, P): column j takes column j + padding, the padding goes last
    moved = inputs_embeds.gather(1, index[..., None].expand(-1, -1, inputs_embeds.shape[-1]))
    return moved, columns < P - padding, True


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions counted from each sequence's first real token, as `generate` does itself (padding gets 0 on the
    left, the last real position on the right; it is masked either way)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _additive(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """Boolean 'may attend' -> an additive mask (0 or the dtype's lowest value), which the sdpa and eager
    attention kernels accept (`SUPPORTED_ATTENTION`)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


class _State:
    """The slots: KV buffers, the shared write column, each slot's mask, position and next input. The live rows
    hold the first slots, in `rows` order."""

    def __init__(self, decoder: ContinuousDecoder, like: Tensor):
        """Buffers of no column yet for `decoder.slots` rows, in `like`'s dtype and device; the first prompt
        grows them (`ensure`)."""
        config = decoder.base.config
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.size, self.max_new_tokens = decoder.slots, decoder.max_new_tokens
        self.margin = max(decoder.max_new_tokens // 2, 8)
        self.rows: list[int] = []  # the prompt in each live slot
        self.slot_of: dict[int, int] = {}
        self.column = self.capacity = 0  # the write column, and the columns the buffers hold
        self.keys = [like.new_zeros(self.size, heads, head_dim, 0) for _ in decoder.layers]  # transposed
        self.values = [like.new_zeros(self.size, heads, 0, head_dim) for _ in decoder.layers]
        self.valid = torch.zeros(self.size, 0, dtype=torch.bool, device=like.device)
        self.position = torch.zeros(self.size, dtype=torch.long, device=like.device)
        self.next_input = torch.zeros(self.size, dtype=torch.long, device=like.device)
        self.start = [0] * self.size  # each slot's first column
        self.cache = _SlotCache()

    def ensure(self, prompt_length: int) -> None:
        """The write column at least `prompt_length`, with room for the longest answer after it: the buffers
        shift or grow when a newcomer is longer than the columns written so far."""
        if self.column < prompt_length:
            self._relayout(prompt_length, max(self.capacity, self._needed(prompt_length)))

    def _needed(self, prompt_length: int) -> int:
        """Columns for rows of up to `prompt_length` prompt tokens: a row holds at most its prompt and all but
        its last answer token; the margin spaces out the compactions."""
        return prompt_length + self.max_new_tokens + self.margin

    def admit(self, group: list[int], attention_mask: Tensor) -> slice:
        """The group's rows take the slots after the live ones; -> those slots."""
        P = attention_mask.shape[1]
        new = slice(len(self.rows), len(self.rows) + len(group))
        self.valid[new] = False
        self.valid[new, self.column - P:self.column] = attention_mask.bool()
        for slot, row in enumerate(group, start=new.start):
            self.rows.append(row)
            self.slot_of[row] = slot
            self.start[slot] = self.column - P
        return new

    def release(self, row: int) -> None:
        """The row leaves; the last live row moves into its slot, so the live rows stay the first slots."""
        slot, last = self.slot_of.pop(row), len(self.rows) - 1
        moved = self.rows.pop()
        if slot != last:
            self._move_slot(last, slot)
            self.rows[slot] = moved
            self.slot_of[moved] = slot

    def _move_slot(self, source: int, dest: int) -> None:
        for buffers in (self.keys, self.values):
            for buffer in buffers:
                buffer[dest] = buffer[source]
        for tensor in (self.valid, self.position, self.next_input):
            tensor[dest] = tensor[source]
        self.start[dest] = self.start[source]

    def first_column(self) -> int:
        return min(self.start[:len(self.rows)])

    def compact(self) -> None:
        """The write column reached the end: drop the columns before the earliest live row's first, in place."""
        self._relayout(self.column - self.first_column(), self.capacity)

    def _relayout(self, column: int, capacity: int) -> None:
        """Move every slot's columns so that the write column becomes `column` (>= what the rows hold), in
        buffers of `capacity` columns: in place when the capacity stays, one layer at a time either way, so
        the peak is one layer's copy on top of the cache."""
        shift = column - self.column
        lo = max(0, -shift)  # columns before lo are dropped (no live row uses them)
        keep, dest = self.column - lo, column - (self.column - lo)
        for buffers, dim in ((self.keys, 3), (self.values, 2)):
            for i, buffer in enumerate(buffers):
                buffers[i] = _moved(buffer, dim, lo, keep, dest, capacity)
        self.valid = _moved(self.valid, 1, lo, keep, dest, capacity)
        self.start = [s + shift for s in self.start]  # only the live slots' entries are read
        self.column, self.capacity = column, capacity


def _moved(buffer: Tensor, dim: int, lo: int, keep: int, dest: int, capacity: int) -> Tensor:
    """`buffer` with its `keep` columns (along `dim`) from `lo` moved to start at `dest`, in a buffer of
    `capacity` columns: the same tensor when the capacity stays. Columns outside the moved ones are cleared
    in boolean masks (stale keys and values are never attended: the mask hides them)."""
    source = buffer.narrow(dim, lo, keep)
    if capacity == buffer.shape[dim]:
        out, source = buffer, source.clone()  # the two ranges may overlap
    else:
        out = buffer.new_zeros(*buffer.shape[:dim], capacity, *buffer.shape[dim + 1:])
    out.narrow(dim, dest, keep).copy_(source)
    if out.dtype == torch.bool:
        out.narrow(dim, 0, dest).fill_(False)
        out.narrow(dim, dest + keep, capacity - dest - keep).fill_(False)
    return out


class ChosenTokenLogprobs:
    """A logits processor that records log p(chosen token) at every decoding step while holding one step of
    (B, V) scores, not all of them: at each call the previous step's choice is the last input id; the last
    step's choice comes from the output (`finish`)."""

    def __init__(self):
        self.steps: list[Tensor] = []
        self._previous: Tensor | None = None  # (B, V) log-softmax of the latest step

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        if self._previous is not None:
            self._take(input_ids[:, -1])
        self._previous = scores.float().log_softmax(dim=-1)
        return scores

    def _take(self, chosen: Tensor) -> None:
        self.steps.append(self._previous.gather(1, chosen[:, None].to(self._previous.device)).squeeze(1))

    def finish(self, new_tokens: Tensor) -> Tensor:
        """new_tokens (B, n) -> (B, n) log-probabilities."""
        if self._previous is not None:
            self._take(new_tokens[:, -1])
            self._previous = None
        return torch.stack(self.steps, dim=1) if self.steps else new_tokens.new_zeros(len(new_tokens), 0).float()
