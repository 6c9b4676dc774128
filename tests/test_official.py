"""The converted official checkpoint against the official code's own outputs (tests/data/official_golden).

The golden folder holds a tiny random model in the official `save_pretrained` layout and what the official
code computed from it (its README lists every behaviour pinned here). Nothing here knows the three proteins:
every check reads the proteins, prompts and expected tensors from the folder, so another golden set made the
same way runs through the same code.
"""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sepit.cli import main
from sepit.commands.bench import bench
from sepit.evaluation.scoring import ScoringSettings
from sepit.commands.convert import official
from sepit.data.errors import DataError
from sepit.data.protein import make_protein
from sepit.data.sample import make_sample
from sepit.interface import GenerationSettings
from sepit.checkpoints.llama_tokenizer import fast_tokenizer_from_sentencepiece
from sepit.models.moe import MoEFeedForward
from sepit.checkpoints.model import load_checkpoint
from sepit.models.decoding import position_ids_from_mask

GOLDEN = Path(__file__).parent / "data" / "official_golden"
INPUTS = json.loads((GOLDEN / "inputs.json").read_text())
PROTEINS = INPUTS["proteins"]
FEATURES, LOGITS = 1e-5, 1e-4  # the tolerances the fidelity contract sets


@pytest.fixture(scope="module")
def outputs():
    return load_file(str(GOLDEN / "outputs.safetensors"))


def golden(outputs, key):
    """One golden run's tensors: p0, p1, ... (each protein alone) or batch3."""
    return {name.split(".", 1)[1]: t for name, t in outputs.items() if name.startswith(f"{key}.")}


def sample(protein):
    coords = protein["node_position"]
    return make_sample(protein["id"], "golden", make_protein(protein["id"], protein["sequence"], coords),
                       protein["question"], "unknown")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("official") / "sepit.ckpt"
    official(GOLDEN / "model", out)
    return out


@pytest.fixture(scope="module")
def model(converted):
    torch.set_grad_enabled(False)
    model, _ = load_checkpoint(converted)
    yield model.eval()
    torch.set_grad_enabled(True)


def close(ours, theirs, atol):
    difference = (ours.float() - theirs.float()).abs().max().item()
    assert difference <= atol, difference


def test_tokenizer_rebuilt_from_the_released_slow_files_is_the_one_the_official_inference_used():
    ours = json.loads(fast_tokenizer_from_sentencepiece(GOLDEN / "model" / "text_tokenizer").backend_tokenizer
                      .to_str())
    theirs = json.loads((GOLDEN / "text_tokenizer_fast_as_loaded" / "tokenizer.json").read_text())
    for part in ("normalizer", "pre_tokenizer", "post_processor", "decoder", "added_tokens"):
        assert ours[part] == theirs[part], part
    pairs = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in theirs["model"]["merges"]]
    assert [tuple(m) for m in ours["model"]["merges"]] == pairs
    assert ours["model"]["vocab"] == theirs["model"]["vocab"]


@pytest.mark.parametrize("index", range(len(PROTEINS)))
def test_each_protein_alone_reproduces_every_official_tensor(model, outputs, index):
    want, protein = golden(outputs, f"p{index}"), PROTEINS[index]
    batch = model.collate([sample(protein)], with_answers=False)
    assert batch["input_ids"][0].tolist() == want["text_input_ids"][0].tolist()
    assert batch["token_masks"][0].tolist() == want["text_attention_mask"][0].tolist()
    assert batch["input_ids"][0][-len(protein["text_input_ids_unpadded"]):].tolist() == \
        protein["text_input_ids_unpadded"]
    assert torch.equal(batch["tokens"], want["protein_input_ids"])

    encoded = model.encoder(batch["tokens"], batch["coords"], batch["observed"], return_attention_bias=True)
    close(encoded["features"], want["esm_hidden_layer_m2"], FEATURES)
    close(encoded["attention_bias"][:, :, :64, :64], want["structure_attention_bias_crop64"], FEATURES)
    projected, _ = model.projector(encoded["features"], encoded["padding_mask"])
    close(projected, want["protein_embeds"], FEATURES)

    routers = {}
    hooks = [m.router.register_forward_hook(lambda mod, args, out, i=i: routers.setdefault(i, out))
             for i, m in enumerate(m for m in model.llm.modules() if isinstance(m, MoEFeedForward))]
    inputs_embeds, attention_mask, _ = model.embed(batch)
    close(inputs_embeds, want["llm_inputs_embeds"], FEATURES)
    assert attention_mask.tolist() == want["llm_attention_mask"].tolist()
    logits = model.llm(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                       position_ids=position_ids_from_mask(attention_mask)).logits
    for hook in hooks:
        hook.remove()
    close(logits[:, -1], want["llm_logits_last"], LOGITS)
    attended = attention_mask.reshape(-1).bool()  # padding rows attend to nothing: no output to compare
    for layer, router_logits in routers.items():
        close(router_logits[attended], want[f"router_logits_layer{layer}"][attended], FEATURES)
    assert len(routers) == sum(k.startswith("router_logits_layer") for k in want)

    tokens, logprobs = model.generate_tokens([sample(protein)], GenerationSettings(max_new_tokens=8, logprobs=True))[0]
    assert tokens.tolist() == want["new_tokens"][0].tolist() == protein["new_tokens"]
    # Every decoding step's logits, by teacher forcing the golden tokens after the prompt.
    steps = want["new_tokens"].shape[1]
    forced = torch.cat([inputs_embeds, model.llm.get_input_embeddings()(want["new_tokens"][:, :-1])], dim=1)
    mask = torch.cat([attention_mask, attention_mask.new_ones(1, steps - 1)], dim=1)
    step_logits = model.llm(inputs_embeds=forced, attention_mask=mask,
                            position_ids=position_ids_from_mask(mask)).logits[:, -steps:]
    close(step_logits, want["step_logits_last"], LOGITS)
    reference = want["step_logits_last"][0].log_softmax(-1).gather(1, want["new_tokens"][0][:, None]).squeeze(1)
    close(logprobs, reference, LOGITS)


def test_a_batch_of_all_proteins_equals_each_alone_unlike_the_official_code(model, outputs):
    samples = [sample(p) for p in PROTEINS]
    batched = model.generate_tokens(samples, GenerationSettings(max_new_tokens=8, logprobs=True))
    inputs_embeds, attention_mask, _ = model.embed(model.collate(samples, with_answers=False))
    last = model.llm(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                     position_ids=position_ids_from_mask(attention_mask)).logits[:, -1]
    official_batch = golden(outputs, "batch3")
    for i, (tokens, logprobs) in enumerate(batched):
        alone = golden(outputs, f"p{i}")
        assert tokens.tolist() == alone["new_tokens"][0].tolist()
        close(last[i], alone["llm_logits_last"][0], LOGITS)
        if official_batch["llm_logits_last"].shape[0] == len(samples):
            # The official code adds the structural encoding to the batch rows [1:-1], not the residues.
            shifted = (official_batch["llm_logits_last"][i] - alone["llm_logits_last"][0]).abs().max().item()
            assert (shifted > 1e-3) == (0 < i < len(samples) - 1 and PROTEINS[i]["node_position"] is not None)


def test_sepit_bench_writes_the_official_tokens_and_their_logprobs(converted, outputs, tmp_path, monkeypatch):
    monkeypatch.setenv("SEPIT_CACHE", str(tmp_path / "cache"))
    task = tmp_path / "golden.jsonl"
    task.write_text("".join(json.dumps({"id": p["id"], "protein": {"id": p["id"], "sequence": p["sequence"],
                                                                   "coords": p["node_position"]},
                                        "instruction": p["question"], "reference": "unknown"}) + "\n"
                            for p in PROTEINS))
    main(["bench", "--model", str(converted), "--tasks", str(task), "--output", str(tmp_path / "run"),
          "--batch_size", "1", "--generation.max_new_tokens", "8", "--generation.logprobs", "true",
          "--scoring.leakage", "false", "--scoring.n_resamples", "10"])
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "run" / "predictions" / "golden.jsonl").open())}
    assert {r["model"] for r in rows.values()} == {"sepit-official"}
    for i, protein in enumerate(PROTEINS):
        want = golden(outputs, f"p{i}")
        row = rows[protein["id"]]
        assert row["token_ids"] == want["new_tokens"][0].tolist()
        reference = want["step_logits_last"][0].log_softmax(-1).gather(1, want["new_tokens"][0][:, None])
        close(torch.tensor(row["token_logprobs"]), reference.squeeze(1), LOGITS)

    # Rows written without logprobs are never passed off as rows with them.
    bench(str(converted), [str(task)], tmp_path / "plain", batch_size=3,
          scoring=ScoringSettings(leakage=False, n_resamples=10),
          generation=GenerationSettings(max_new_tokens=8))
    assert "token_logprobs" not in next(iter((tmp_path / "plain" / "predictions" / "golden.jsonl").open()))
    with pytest.raises(DataError, match="without the per-token log-probabilities"):
        bench(str(converted), [str(task)], tmp_path / "plain", batch_size=3,
              scoring=ScoringSettings(leakage=False, n_resamples=10),
              generation=GenerationSettings(max_new_tokens=8, logprobs=True))


# --- the folders a user may hand over, and what the converter says about them -------------------------------

@pytest.fixture
def folder(tmp_path):
    copy = tmp_path / "official"
    shutil.copytree(GOLDEN / "model", copy)
    for path in copy.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    return copy


def converted_state(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def to_deepspeed_layout(folder, num_layers=2, num_experts=4):
    """The naming of the official DeepSpeed training: gates renamed, experts in per-expert files."""
    state = load_file(str(folder / "model.safetensors"))
    step = folder / "global_step100"
    step.mkdir()
    for l in range(num_layers):
        state[f"text_model.model.layers.{l}.mlp.deepspeed_moe.gate.wg.weight"] = \
            state.pop(f"text_model.model.layers.{l}.mlp.gate.weight")
        for e in range(num_experts):
            prefix = f"text_model.model.layers.{l}.mlp.experts.{e}."
            expert = {name.replace(".mlp.experts.", ".mlp.deepspeed_moe.experts.deepspeed_experts."): state.pop(name)
                      for name in [n for n in state if n.startswith(prefix)]}
            torch.save(expert, step / f"layer_{l}_expert_{e}_mp_rank_00_model_states.pt")
    save_file(state, str(folder / "model.safetensors"))
    return step


def test_the_deepspeed_training_layout_converts_to_the_same_tensors(folder, converted, tmp_path):
    step = to_deepspeed_layout(folder)
    official(folder, tmp_path / "ds" / "sepit.ckpt")
    ours, reference = converted_state(tmp_path / "ds" / "sepit.ckpt"), converted_state(converted)
    assert ours.keys() == reference.keys()
    assert all(torch.equal(ours[k], reference[k]) for k in reference)

    (step / "layer_1_expert_2_mp_rank_00_model_states.pt").unlink()
    with pytest.raises(DataError, match="layer_1_expert_2_mp_rank_00_model_states.pt"):
        official(folder, tmp_path / "ds2" / "sepit.ckpt")


def test_bad_folders_stop_with_the_file_and_the_fix(folder, tmp_path):
    out = tmp_path / "out" / "sepit.ckpt"
    with pytest.raises(DataError, match="config.json.*not found"):
        official(tmp_path, out)

    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["intermediate_size"] *= 2
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match=r"wrong shape: llm\.model\.layers\.0\.mlp\.experts\.0\.down_proj\.weight"):
        official(folder, out)
    config["text_config"]["intermediate_size"] //= 2
    (folder / "config.json").write_text(json.dumps(config))

    state = load_file(str(folder / "model.safetensors"))
    save_file({**state, "text_model.model.layers.0.mlp.extra.weight": torch.zeros(2)}, str(folder / "model.safetensors"))
    with pytest.raises(DataError, match="layers.0.mlp.extra.weight"):
        official(folder, out)
    gate = state["text_model.model.layers.0.mlp.gate.weight"]
    save_file({**state, "text_model.model.layers.0.mlp.deepspeed_moe.gate.wg.weight": gate.clone()},
              str(folder / "model.safetensors"))
    with pytest.raises(DataError, match="already came from another name"):
        official(folder, out)
    del state["multi_modal_projector.linear_2.bias"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(DataError, match=r"missing: projector\.net\.2\.bias"):
        official(folder, out)

    (folder / "text_tokenizer" / "tokenizer.model").unlink()
    with pytest.raises(DataError, match="tokenizer.model.*tokenizer not found"):
        official(folder, out)
    assert not out.exists()


def test_choices_are_scored_as_the_official_training_writes_an_answer(model):
    from sepit.models.prompts import official_prompt

    protein = PROTEINS[0]
    prompt, _, attention = official_prompt(model.tokenizer, protein["question"], model.official)
    ids, answer, with_answer = official_prompt(model.tokenizer, protein["question"], model.official, "yes")
    assert torch.equal(ids[:len(prompt)], prompt) and torch.equal(with_answer[:len(prompt)], attention)
    written = model.tokenizer(model.official.text(protein["question"]) + " yes </s>")["input_ids"]
    assert ids[answer].tolist() == written[-int(answer.sum()):] and ids[-1] == model.tokenizer.eos_token_id
    scores = model.answer_log_likelihoods([dataclasses.replace(sample(protein), reference=r) for r in ("yes", "no")])
    assert scores.shape == (2,) and bool(torch.isfinite(scores).all()) and scores[0] != scores[1]


def test_lean_loading_equals_building_in_float32_then_loading(converted):
    """`load_checkpoint` builds on the meta device and takes the checkpoint's tensors as they are: the same
    weights, the same greedy answers as the float32 build it replaced; `dtype` loads straight into bfloat16."""
    from transformers import AutoTokenizer

    from sepit.checkpoints.stage import TOKENIZER_DIR, build_from_record, load_into, read_stage_checkpoint

    lean, _ = load_checkpoint(converted)
    record, state = read_stage_checkpoint(converted, (1, 2))
    tokenizer = AutoTokenizer.from_pretrained(converted.parent / TOKENIZER_DIR)
    built = build_from_record(record, tokenizer)
    load_into(built, state, "model.", converted)
    ours, theirs = lean.state_dict(), built.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not any(p.is_meta for p in lean.parameters()) and {p.dtype for p in lean.parameters()} == {torch.float32}
    samples = [sample(p) for p in PROTEINS]
    config = GenerationSettings(max_new_tokens=8)
    with torch.no_grad():
        assert [ids.tolist() for ids, _ in lean.eval().generate_tokens(samples, config, 2)] == \
            [ids.tolist() for ids, _ in built.eval().generate_tokens(samples, config, 2)]
    from sepit.models.moe import count_parameters

    assert count_parameters(lean) == count_parameters(built)  # tied parameters stay tied
    half, _ = load_checkpoint(converted, dtype="bfloat16")
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    rotary = {name: b for name, b in half.named_buffers() if name.endswith("inv_freq")}
    assert rotary and all(b.dtype == torch.float32 for b in rotary.values())  # positions past 256 stay distinct
    assert all(torch.equal(t, ours[k].to(torch.bfloat16)) for k, t in half.state_dict().items()
               if t.is_floating_point() and k in ours and ours[k].dtype == torch.float32 and "inv_freq" not in k)
