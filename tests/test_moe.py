"""Upcycling a dense decoder into a mixture of experts, checked against the dense model it came from."""

import copy

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, \
    Qwen2ForCausalLM

from sepit.models.moe import (ExpertSettings, MoEFeedForward, count_parameters, expert_load, moe_aux_loss,
                              moe_layers, upcycle_to_moe)

TINY = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0)
FAMILIES = {
    "llama": (LlamaConfig, LlamaForCausalLM, {}),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, {"tie_word_embeddings": True}),  # tied weights must survive saving
    "mistral": (MistralConfig, MistralForCausalLM, {"sliding_window": 8}),
}


def dense_model(family: str) -> nn.Module:
    config_cls, model_cls, extra = FAMILIES[family]
    torch.manual_seed(0)
    return model_cls(config_cls(**TINY, **extra)).eval()


def upcycled(dense: nn.Module, **kwargs) -> nn.Module:
    torch.manual_seed(1)
    return upcycle_to_moe(copy.deepcopy(dense), ExpertSettings(**kwargs)).eval()


def left_padded_batch():
    torch.manual_seed(2)
    ids = torch.randint(1, TINY["vocab_size"], (3, 10))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    mask[2, :7] = 0
    return ids.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("top_k", [1, 2])
@pytest.mark.parametrize("family", FAMILIES)
def test_upcycled_logits_equal_dense(family, top_k):
    dense = dense_model(family)
    moe = upcycled(dense, top_k=top_k)
    ids, mask = left_padded_batch()
    with torch.no_grad():
        want = dense(input_ids=ids, attention_mask=mask).logits
        got = moe(input_ids=ids, attention_mask=mask).logits
    keep = mask.bool()
    assert (got[keep] - want[keep]).abs().max() < 1e-5
    assert all(len(set(int(e) for e in m.load.nonzero())) > 1 for m in moe_layers(moe).values())  # really routed


def test_parameter_counts():
    dense = dense_model("llama")
    dense_total, dense_active = count_parameters(dense)
    assert dense_total == dense_active == sum(p.numel() for p in dense.parameters())
    ffn = sum(p.numel() for p in dense.model.layers[0].mlp.parameters())
    moe = upcycled(dense, num_experts=4, top_k=1)
    routers = sum(m.router.weight.numel() for m in moe_layers(moe).values())
    assert routers == 2 * 4 * TINY["hidden_size"]
    total, active = count_parameters(moe)
    assert total == dense_total + 2 * 3 * ffn + routers
    assert active == dense_total  # the paper's "same activated parameters": routers are not counted as active
    assert count_parameters(upcycled(dense, num_experts=4, top_k=2))[1] == dense_total + 2 * ffn


def hand_aux_loss(x, router_weight, coef, keep):
    """Switch loss, written token by token: E * sum_e f_e * P_e over the unmasked tokens, top-1."""
    num_experts = router_weight.shape[0]
    counts, prob_sums, n = [0.0] * num_experts, [0.0] * num_experts, 0
    for token, kept in zip(x, keep):
        if not kept:
            continue
        probs = torch.softmax(router_weight.detach() @ token, dim=0)
        counts[int(probs.argmax())] += 1
        for e in range(num_experts):
            prob_sums[e] += float(probs[e])
        n += 1
    return coef * num_experts * sum(c / n * p / n for c, p in zip(counts, prob_sums))


def small_moe(num_experts=4, top_k=1, coef=0.01):
    torch.manual_seed(3)
    ffn = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8))
    return MoEFeedForward(ffn, 8, num_experts, top_k, coef, 0.0, init_std=1.0)


def test_aux_loss_matches_hand_formula_with_and_without_padding():
    moe = small_moe(coef=0.05)
    x = torch.randn(2, 5, 8)
    moe(x)
    want = hand_aux_loss(x.reshape(-1, 8), moe.router.weight, 0.05, [True] * 10)
    assert moe.aux_loss.item() == pytest.approx(want, rel=1e-5)
    assert moe.aux_loss.item() > 0 and torch.isfinite(moe.aux_loss)
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    moe.token_mask = mask
    moe(x)
    want = hand_aux_loss(x.reshape(-1, 8), moe.router.weight, 0.05, mask.reshape(-1).bool().tolist())
    assert moe.aux_loss.item() == pytest.approx(want, rel=1e-5)
    assert moe.load.sum() == 8


def test_uniform_router_gives_aux_loss_equal_to_coef():
    moe = small_moe(coef=0.01)
    nn.init.zeros_(moe.router.weight)
    moe(torch.randn(4, 6, 8))
    assert moe.aux_loss.item() == pytest.approx(0.01)


def test_perturbed_expert_changes_only_its_tokens():
    moe = small_moe()
    x = torch.randn(3, 7, 8)
    with torch.no_grad():
        before = moe(x)
        routed_to_2 = moe.router(x).argmax(-1) == 2
        assert routed_to_2.any() and not routed_to_2.all()
        moe.experts[2][2].weight.add_(0.1)
        after = moe(x)
    changed = (after - before).abs().amax(-1) > 0
    assert torch.equal(changed, routed_to_2)


def test_perturbed_expert_changes_model_output():
    dense = dense_model("llama")
    moe = upcycled(dense)
    ids, mask = left_padded_batch()
    with torch.no_grad():
        before = moe(input_ids=ids, attention_mask=mask).logits
        for m in moe_layers(moe).values():
            for p in m.experts[int(m.load.argmax())].parameters():
                p.add_(0.05)
        after = moe(input_ids=ids, attention_mask=mask).logits
    assert (after - before).abs().max() > 1e-3


@pytest.mark.parametrize("top_k", [1, 2])
def test_expert_load_counts_unpadded_tokens(top_k):
    moe = upcycled(dense_model("qwen2"), top_k=top_k)
    ids, mask = left_padded_batch()
    with torch.no_grad():
        moe(input_ids=ids, attention_mask=mask)
    load = expert_load(moe)
    assert sorted(load) == [0, 1]
    for counts in load.values():
        assert counts.shape == (4,) and counts.sum() == top_k * mask.sum()
    with torch.no_grad():
        moe(input_ids=ids)  # no mask: every position counts again
    assert all(c.sum() == top_k * ids.numel() for c in expert_load(moe).values())


def test_gradients_reach_router_and_experts():
    moe = upcycled(dense_model("mistral")).train()
    ids, mask = left_padded_batch()
    out = moe(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100))
    (out.loss + moe_aux_loss(moe)).backward()
    for m in moe_layers(moe).values():
        assert m.router.weight.grad.abs().sum() > 0
        for e, count in enumerate(m.load):
            grads = [p.grad for p in m.experts[e].parameters()]
            if count > 0:
                assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_the_lm_loss_alone_trains_the_router_at_top_1():
    moe = upcycled(dense_model("llama")).train()
    ids, mask = left_padded_batch()
    moe(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss.backward()
    assert all(m.top_k == 1 and m.router.weight.grad.abs().sum() > 0 for m in moe_layers(moe).values())


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_greedy_generate_matches_dense(family):
    dense = dense_model(family)
    moe = upcycled(dense)
    ids, mask = left_padded_batch()
    kwargs = dict(attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=0)
    want = dense.generate(ids, **kwargs)
    got = moe.generate(ids, **kwargs)
    assert got.shape == (3, 15) and torch.equal(got, want)
    assert all(c.sum() == 3 for c in expert_load(moe).values())  # the last step: one token per sequence


def test_unknown_layout_and_double_upcycling_are_errors():
    with pytest.raises(ValueError, match="Sequential"):
        upcycle_to_moe(nn.Sequential(nn.Linear(4, 4)))
    moe = upcycled(dense_model("llama"))
    with pytest.raises(ValueError, match="already upcycled"):
        upcycle_to_moe(moe)
    with pytest.raises(ValueError, match="no MoE layers"):
        moe_aux_loss(dense_model("llama"))


def test_router_jitter_only_in_training():
    moe = MoEFeedForward(nn.Linear(8, 8), 8, 4, 1, 0.01, router_jitter=0.5, init_std=1.0)
    x = torch.randn(2, 6, 8)

    def aux_loss(training):
        moe.train(training)(x)
        return moe.aux_loss.item()

    assert aux_loss(False) == aux_loss(False)
    torch.manual_seed(4)
    assert len({aux_loss(False), aux_loss(True), aux_loss(True)}) == 3


def test_router_logits_are_float32_under_bf16_autocast():
    """As the official training's DeepSpeed gate: float32 logits from float32 input and weight, even where autocast
    would run the Linear in bfloat16; the routing (aux loss, load) equals the float32 run's exactly."""
    torch.manual_seed(5)
    moe = MoEFeedForward(nn.Linear(64, 64), 64, 4, 1, 0.01, router_jitter=0.0, init_std=1.0).eval()
    x = torch.randn(3, 20, 64)
    want = x.reshape(-1, 64) @ moe.router.weight.T  # (60, 4) float32, outside autocast
    with torch.no_grad():
        moe(x)
    plain_aux, plain_load = moe.aux_loss.clone(), moe.load.clone()
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        assert moe.router(x.reshape(-1, 64)).dtype == torch.bfloat16  # what a plain Linear gives here
        got = moe.router_logits(x.reshape(-1, 64))
        moe(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    bf16 = (x.reshape(-1, 64).bfloat16() @ moe.router.weight.bfloat16().T).float()
    assert (bf16 - want).abs().max() > 1e-3  # the test can tell the two precisions apart
    assert moe.aux_loss.dtype == torch.float32 and torch.equal(moe.aux_loss, plain_aux)
    assert torch.equal(moe.load, plain_load)


def test_router_logits_are_float32_with_16_bit_weights():
    """A model cast to bfloat16 (`dtype: bfloat16` in evaluation) still routes on float32 logits, from its
    bfloat16 router weight and inputs widened to float32."""
    torch.manual_seed(6)
    moe = MoEFeedForward(nn.Linear(64, 64), 64, 4, 1, 0.01, router_jitter=0.0, init_std=1.0).to(torch.bfloat16)
    x = torch.randn(60, 64).bfloat16()
    got = moe.router_logits(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, x.float() @ moe.router.weight.float().T, rtol=0, atol=1e-5)
