"""Continuous batching over the slot KV cache (sepit/models/decoding.py), checked against the independent
reference: Hugging Face's `generate`, one sample per call. Answers of mixed lengths (an eos the random model
says often), slots refilled while others decode, finished rows' slots taken by the last live row, the cache
shifted, logprobs, and the fallbacks."""

import collections
import dataclasses

import pytest
import torch

from sepit.data.protein import make_protein
from sepit.data.sample import make_sample
from sepit.models import decoding
from sepit.interface import GenerationSettings
from sepit.models.moe import ExpertSettings, MoEFeedForward, upcycle_to_moe
from test_network import CORPUS, _coords, _model, llm_dir  # noqa: F401  (llm_dir is a fixture)

WORDS = " ".join(CORPUS).split()


def _samples(n: int = 14):
    """Prompts and proteins of many lengths; every third protein has coordinates."""
    residues = "ACDEFGHIKLMNPQRSTVWY"
    out = []
    for i in range(n):
        length = 3 + (7 * i) % 23
        sequence = "".join(residues[(i * 5 + j * 3) % 20] for j in range(length))
        protein = make_protein(f"p{i}", sequence, _coords(length, i) if i % 3 == 0 else None)
        words = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(1 + i % 6))
        out.append(make_sample(f"s{i}", "t", protein, f"{words} <protein> {WORDS[i % len(WORDS)]}", "no"))
    return out


def _alone(model, samples, config):
    return [model._hf_generate([s], config)[0] for s in samples]


@pytest.fixture(scope="module")
def mixed(llm_dir):  # noqa: F811
    """The model with eos set to a token it often says, so answers end at many different lengths."""
    model, samples = _model(llm_dir), _samples()
    config = GenerationSettings(max_new_tokens=10, logprobs=True)
    with torch.no_grad():
        said = collections.Counter(t for ids, _ in _alone(model, samples, config) for t in ids.tolist()[1:])
    for token, _ in said.most_common(8):  # the first that ends some answers early and leaves others long
        model.tokenizer.eos_token = model.tokenizer.convert_ids_to_tokens(token)
        with torch.no_grad():
            reference = _alone(model, samples, config)
        lengths = [len(ids) for ids, _ in reference]
        if len(set(lengths)) >= 3 and max(lengths) == config.max_new_tokens:
            return model, samples, config, reference
    raise AssertionError(f"no eos gives mixed lengths: {lengths}")


def _same(answers, reference):
    assert [ids.tolist() for ids, _ in answers] == [ids.tolist() for ids, _ in reference]
    for (_, logprobs), (_, expected) in zip(answers, reference):
        assert torch.allclose(logprobs, expected, atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5, 64])
def test_continuous_batching_equals_generate_one_sample_at_a_time(mixed, batch_size, monkeypatch):
    model, samples, config, reference = mixed
    assert decoding.supports(model.llm)
    calls = _count_calls(monkeypatch, "compact", "_move_slot", "_relayout")
    _same(model.generate_tokens(samples, config, batch_size=batch_size), reference)
    if batch_size in (2, 3):  # many refills: the write column runs past the end and the rows are shifted
        assert calls["compact"] > 0
    if 1 < batch_size:
        assert calls["_move_slot"] > 0  # a row left before the last live one
    assert not model.training


def _count_calls(monkeypatch, *names):
    calls = collections.Counter()
    for name in names:
        original = getattr(decoding._State, name)
        monkeypatch.setattr(decoding._State, name,
                            lambda self, *a, _f=original, _n=name: calls.update([_n]) or _f(self, *a))
    return calls


def test_a_newcomer_longer_than_the_written_columns_shifts_every_row(mixed, monkeypatch):
    """The queue is longest first by an estimate; a later, longer prompt moves the live rows right."""
    model, samples, config, reference = mixed
    model.eval()

    def embed(indices):
        inputs_embeds, attention_mask, _ = model.embed(model.collate([samples[i] for i in indices], False))
        return inputs_embeds, attention_mask

    decoder = decoding.ContinuousDecoder(model.llm, model.tokenizer.eos_token_id, config.max_new_tokens, slots=3,
                                         logprobs=True)
    lengths = [-n for n in model.spliced_lengths(samples)]  # shortest first: every refill is longer
    moves = []
    original = decoding._State._relayout
    monkeypatch.setattr(decoding._State, "_relayout",
                        lambda self, column, capacity: moves.append(column > self.column) or original(self, column,
                                                                                                      capacity))
    with torch.no_grad():
        _same(decoder.run(lengths, embed), reference)
    assert any(moves)  # the write column moved right for a longer newcomer


def test_left_padded_rows_are_moved_first_and_other_rows_stay():
    embeds = torch.arange(8, dtype=torch.float).reshape(2, 4, 1)
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]]).bool()
    moved, mask, at_front = decoding._to_front(embeds, left)
    assert at_front and mask.int().tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert moved[0, :2, 0].tolist() == [2, 3] and moved[1, :, 0].tolist() == [4, 5, 6, 7]
    for mask, at_front in ((torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]]).bool(), True),  # right padding
                           (torch.tensor([[1, 0, 1, 1], [1, 1, 1, 1]]).bool(), False)):  # padding among tokens
        out = decoding._to_front(embeds, mask)
        assert out[0] is embeds and out[1] is mask and out[2] is at_front


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_prefills_attend_as_one_prompt_alone_with_either_kernel(mixed, kernel, monkeypatch):
    """Prompts moved first: the sdpa kernel prefills them in its causal mode (no mask, as `generate` does for one
    prompt alone), the eager kernel through the mask; both give one-at-a-time's answers."""
    model, samples, config, reference = mixed
    monkeypatch.setattr(model.llm.config, "_attn_implementation", kernel)
    if kernel == "eager":
        with torch.no_grad():
            reference = _alone(model, samples, config)
    prefill_masks = []
    sdpa = decoding.ALL_ATTENTION_FUNCTIONS["sdpa"]
    monkeypatch.setitem(decoding.ALL_ATTENTION_FUNCTIONS, "sdpa", lambda module, query, key, value, mask, *a, **k:
                        (query.shape[2] > 1 and prefill_masks.append(mask)) or sdpa(module, query, key, value,
                                                                                   mask, *a, **k))
    _same(model.generate_tokens(samples, config, batch_size=3), reference)
    if kernel == "sdpa":
        assert prefill_masks and all(mask is None for mask in prefill_masks)


def test_prompts_with_padding_among_their_tokens_are_prefilled_through_the_mask(mixed):
    """A masked column inside every prompt (after its first token): no causal mode, and the same answers."""
    model, samples, config, reference = mixed

    def embed(indices):
        inputs_embeds, attention_mask, _ = model.embed(model.collate([samples[i] for i in indices], False))
        first = (~attention_mask.bool()).sum(dim=1)  # each row's first real column
        junk = torch.full_like(inputs_embeds[:, :1], 7.0)
        rows = [(torch.cat([e[:f + 1], j, e[f + 1:]]), torch.cat([m[:f + 1], m.new_zeros(1), m[f + 1:]]))
                for e, m, j, f in zip(inputs_embeds, attention_mask, junk, first.tolist())]
        return torch.stack([e for e, _ in rows]), torch.stack([m for _, m in rows])

    decoder = decoding.ContinuousDecoder(model.llm, model.tokenizer.eos_token_id, config.max_new_tokens, slots=4,
                                         logprobs=True)
    with torch.no_grad():
        _same(decoder.run(model.spliced_lengths(samples), embed), reference)


def test_one_new_token_and_no_samples(mixed):
    model, samples, config, _ = mixed
    one = dataclasses.replace(config, max_new_tokens=1)
    with torch.no_grad():
        reference = _alone(model, samples, one)
    _same(model.generate_tokens(samples, one, batch_size=4), reference)
    assert all(len(ids) == 1 for ids, _ in reference)
    assert model.generate_tokens([], one) == []


def test_a_lora_wrapped_llm_decodes_as_generate_does(llm_dir):  # noqa: F811
    from sepit.models.lora import LoraSettings, add_lora
    from sepit.models.network import TextLanguageModel
    from test_network import _load

    tokenizer, llm = _load(llm_dir)
    torch.manual_seed(0)
    model = TextLanguageModel(llm, tokenizer, sequence_format="raw")
    model.llm = add_lora(model.llm, LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj")))
    for name, parameter in model.llm.named_parameters():  # adapters that change the answers
        if "lora_B" in name:
            parameter.data.normal_(0, 0.5)
    model.eval()
    assert decoding.supports(model.llm)
    samples, config = _samples(8), GenerationSettings(max_new_tokens=6, logprobs=True)
    with torch.no_grad():
        reference = _alone(model, samples, config)
    _same(model.generate_tokens(samples, config, batch_size=3), reference)


def test_moe_llm_decodes_the_same_without_routing_statistics(llm_dir):  # noqa: F811
    model, samples = _model(llm_dir), _samples(8)
    upcycle_to_moe(model.llm, ExpertSettings(num_experts=3))
    torch.manual_seed(1)
    for module in model.llm.modules():  # experts that differ, so routing matters
        if isinstance(module, MoEFeedForward):
            for expert in module.experts:
                for parameter in expert.parameters():
                    parameter.data.add_(0.05 * torch.randn_like(parameter))
    model.eval()
    config = GenerationSettings(max_new_tokens=6, logprobs=True)
    with torch.no_grad():
        reference = _alone(model, samples, config)
    moe = [m for m in model.llm.modules() if isinstance(m, MoEFeedForward)]
    for m in moe:
        m.aux_loss = None
    _same(model.generate_tokens(samples, config, batch_size=3), reference)
    assert all(m.aux_loss is None and m.record_balance for m in moe)  # nothing recorded, and switched back on


def test_sampling_and_logits_processors_go_through_generate(llm_dir):  # noqa: F811
    model, samples = _model(llm_dir), _samples(6)
    config = GenerationSettings(max_new_tokens=6)
    model.llm.generation_config.repetition_penalty = 1.3
    assert not decoding.supports(model.llm)
    with torch.no_grad():  # Hugging Face's generate, batch_size samples per call
        reference = [ids.tolist() for start in (0, 4) for ids, _ in model._hf_generate(samples[start:start + 4], config)]
    assert [ids.tolist() for ids, _ in model.generate_tokens(samples, config, batch_size=4)] == reference

    model.llm.generation_config.repetition_penalty = None
    sampled = dataclasses.replace(config, do_sample=True, seed=3)
    first = [ids.tolist() for ids, _ in model.generate_tokens(samples, sampled, batch_size=3)]
    assert first == [ids.tolist() for ids, _ in model.generate_tokens(samples, sampled, batch_size=3)]


def test_the_step_kernel_equals_the_models_kernels_with_grouped_heads():
    """A decoding step's attention reads keys stored transposed; it must compute what eager and sdpa do."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.models.llama.modeling_llama import eager_attention_forward

    torch.manual_seed(0)
    rows, heads, kv, d, width = 3, 4, 2, 8, 11
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal, module.training = heads // kv, True, False
    query = torch.randn(rows, heads, 1, d)
    keys, values = torch.randn(rows, kv, width, d), torch.randn(rows, kv, width, d)
    allowed = torch.rand(rows, 1, 1, width) > 0.3
    allowed[..., -1] = True  # every row sees its newest token
    mask = decoding._additive(allowed, torch.float32)
    ours, _ = decoding._step_attention(module, query, keys.transpose(2, 3), values, mask, scaling=d ** -0.5)
    for reference in (eager_attention_forward, sdpa_attention_forward):
        expected, _ = reference(module, query, keys, values, mask, scaling=d ** -0.5)
        assert ours.shape == expected.shape == (rows, 1, heads, d)
        assert torch.allclose(ours, expected, atol=1e-6)


def test_the_step_kernel_serves_every_decoding_step_and_nothing_else(mixed, monkeypatch):
    """Each decoding step's layers use the step kernel (prefills the model's own); the model's kernel comes back
    after the run, also when a step fails."""
    model, samples, config, _ = mixed
    kernel = model.llm.config._attn_implementation
    calls = collections.Counter()
    step = decoding.ALL_ATTENTION_FUNCTIONS[decoding.STEP_ATTENTION]
    monkeypatch.setitem(decoding.ALL_ATTENTION_FUNCTIONS, decoding.STEP_ATTENTION,
                        lambda module, query, *a, **k: calls.update([query.shape[2]]) or step(module, query, *a, **k))
    monkeypatch.setattr(decoding.ContinuousDecoder, "_step", lambda self, *a, _f=decoding.ContinuousDecoder._step:
                        calls.update(["steps"]) or _f(self, *a))
    model.generate_tokens(samples[:3], config, batch_size=2)
    layers = model.llm.config.num_hidden_layers
    assert calls["steps"] > 0 and calls == {1: calls["steps"] * layers, "steps": calls["steps"]}
    assert model.llm.config._attn_implementation == kernel
    monkeypatch.setitem(decoding.ALL_ATTENTION_FUNCTIONS, decoding.STEP_ATTENTION, lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        model.generate_tokens(samples[:3], config, batch_size=2)
    assert model.llm.config._attn_implementation == kernel


def test_greedy_tokens_are_argmax_with_its_ties_and_nan():
    logits = torch.randn(5, 40)
    logits[0, [3, 9]] = float("nan")
    logits[1, 4], logits[1, 7] = float("inf"), float("nan")
    logits[2] = float("-inf")
    logits[3, [2, 5]] = 100.0
    logits[4, [1, 2]] = float("inf")
    assert decoding.greedy_tokens(logits).tolist() == logits.argmax(-1).tolist() == [3, 7, 0, 2, 1]
    assert decoding.greedy_tokens(logits).dtype == torch.long
    assert decoding.greedy_tokens(logits.bfloat16()).tolist() == logits.bfloat16().argmax(-1).tolist()
