"""The tiny local model builders (sepit/tiny/builders.py): everything they write loads through the real loaders."""

import subprocess
import sys
import time

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from sepit.data.protein import make_protein
from sepit.models.encoder import StructureAwareESM, esm2_from_checkpoint
from sepit.tiny.builders import VOCAB_SIZE, build_tiny_esm, build_tiny_llm, build_tiny_text_encoder, main

SUBJECTS = ["this protein", "the enzyme", "a membrane transporter", "the kinase", "this factor"]
ACTIONS = ["binds dna", "hydrolyses atp", "regulates transcription", "moves ions across the membrane",
           "is found in the nucleus", "catalyses the first step of glycolysis", "is not an enzyme",
           "answer yes or no", "describe the function of <protein>", "what does <protein> do?"]
CORPUS = [f"{s.capitalize()} {a}." for s in SUBJECTS for a in ACTIONS]  # 50 sentences


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def _timed(label, build, *args, **kwargs):
    start = time.perf_counter()
    out = build(*args, **kwargs)
    print(f"{label}: built in {time.perf_counter() - start:.2f} s")
    return out


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    return _timed("llama, 50 sentences", build_tiny_llm, tmp_path_factory.mktemp("llm"), corpus=CORPUS)


def _state(model):
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def test_llm_loads_with_the_auto_classes(llm_dir):
    tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    model = AutoModelForCausalLM.from_pretrained(llm_dir)
    assert model.config.model_type == "llama"
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.max_position_embeddings == 2048
    assert not model.config.tie_word_embeddings
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token, tokenizer.unk_token) == \
        ("<s>", "</s>", "<pad>", "<unk>")
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    generation = model.generation_config
    assert (generation.pad_token_id, generation.eos_token_id) == (tokenizer.pad_token_id, tokenizer.eos_token_id)
    assert "random" in (llm_dir / "README.md").read_text()
    text = "The enzyme hydrolyses ATP (EC 3.6.1.3)."
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text  # byte-level: lossless


def test_chat_template_ends_with_the_assistant_turn(llm_dir):
    tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    messages = [{"role": "user", "content": "What does <protein> do?"}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt.startswith(tokenizer.bos_token) and "What does <protein> do?" in prompt
    assert prompt.endswith("<|assistant|>\n")
    closed = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert closed.endswith(tokenizer.eos_token + "\n") and "<|assistant|>" not in closed
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_tokens_to_ids("<|assistant|>") in ids  # one special token, not split


def test_greedy_generate_takes_the_most_likely_token_each_step(llm_dir):
    tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    model = AutoModelForCausalLM.from_pretrained(llm_dir).eval()
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Is this protein an enzyme?"}],
                                           tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False)
        ids = inputs["input_ids"]
        for _ in range(5):  # the loaded weights, read step by step without a cache
            ids = torch.cat([ids, model(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert out.tolist() == ids.tolist()


@pytest.mark.parametrize("family", ["qwen2", "mistral"])
def test_other_families_load_and_rebuild_identically(tmp_path, family):
    first = _timed(family, build_tiny_llm, tmp_path / "a", family=family, corpus=CORPUS, hidden_size=32)
    second = build_tiny_llm(tmp_path / "b", family=family, corpus=CORPUS, hidden_size=32)
    a, b = AutoModelForCausalLM.from_pretrained(first), AutoModelForCausalLM.from_pretrained(second)
    assert a.config.model_type == family and a.config.hidden_size == 32
    assert _state(a).keys() == _state(b).keys()
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()


def test_llm_rebuild_is_deterministic_and_the_seed_matters(tmp_path, llm_dir):
    again = build_tiny_llm(tmp_path / "again", corpus=CORPUS)
    other = build_tiny_llm(tmp_path / "other", corpus=CORPUS, seed=1)
    reference = _state(AutoModelForCausalLM.from_pretrained(llm_dir))
    rebuilt = _state(AutoModelForCausalLM.from_pretrained(again))
    assert all(torch.equal(reference[k], rebuilt[k]) for k in reference)
    assert (llm_dir / "model.safetensors").read_bytes() == (again / "model.safetensors").read_bytes()
    assert (llm_dir / "tokenizer.json").read_bytes() == (again / "tokenizer.json").read_bytes()
    seeded = _state(AutoModelForCausalLM.from_pretrained(other))
    assert not torch.equal(reference["model.embed_tokens.weight"], seeded["model.embed_tokens.weight"])


def test_global_rng_is_left_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_esm(tmp_path / "esm2.pt", seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_unknown_family_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown family"):
        build_tiny_llm(tmp_path, family="gpt2", corpus=CORPUS)


def test_default_sp14_corpus(tmp_path):
    path = _timed("llama, SP14 corpus", build_tiny_llm, tmp_path / "llm")
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert len(tokenizer) == VOCAB_SIZE  # the SP14 corpus has merges enough to fill the vocabulary
    # Words of the benchmark's answers are in the vocabulary as whole tokens.
    assert len(tokenizer(" protein", add_special_tokens=False)["input_ids"]) == 1


def test_text_encoder_loads_with_auto_classes(tmp_path):
    first = _timed("text encoder", build_tiny_text_encoder, tmp_path / "a", corpus=CORPUS)
    tokenizer = AutoTokenizer.from_pretrained(first)
    model = AutoModel.from_pretrained(first).eval()
    assert model.config.model_type == "bert" and model.config.hidden_size == 32
    batch = tokenizer(["This protein binds DNA.", "The kinase"], padding=True, return_tensors="pt")
    tokens = tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    assert tokens[0] == "[CLS]" and tokens[tokens.index("[SEP]") - 1] == "." and "[UNK]" not in tokens
    assert tokenizer.pad_token_id == model.config.pad_token_id
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    assert hidden.shape == (*batch["input_ids"].shape, 32)
    # The same ids for the same words, build after build, also in another process (whose hash seeds differ).
    subprocess.run([sys.executable, "-c", "import sys; from sepit.tiny.builders import build_tiny_text_encoder; "
                    f"build_tiny_text_encoder(sys.argv[1], corpus={CORPUS!r})", str(tmp_path / "b")], check=True)
    for name in ("model.safetensors", "tokenizer.json"):
        assert (first / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.filterwarnings("ignore:Regression weights not found")
def test_esm_checkpoint_loads_with_esm2_from_checkpoint(tmp_path):
    path = _timed("esm2", build_tiny_esm, tmp_path / "esm2.pt", num_layers=2, embed_dim=32, attention_heads=4)
    model = esm2_from_checkpoint(path).eval()
    assert (model.num_layers, model.embed_dim, model.attention_heads) == (2, 32, 4)
    again = esm2_from_checkpoint(build_tiny_esm(tmp_path / "again.pt")).eval()
    saved = [k for k in model.state_dict() if not k.startswith("contact_head.regression")]  # not in the file
    assert all(torch.equal(model.state_dict()[k], again.state_dict()[k]) for k in saved)
    tokens = StructureAwareESM(model).tokenize([make_protein("p", "MKTAYIAKQR")])["tokens"]
    with torch.no_grad():
        logits = model(tokens)["logits"]
        # the LM head reads the final representation through the tied embedding, as fair-esm defines it
        final = model(tokens, repr_layers=[2])["representations"][2]
        head = model.lm_head
        expected = head.layer_norm(torch.nn.functional.gelu(head.dense(final))) @ head.weight.T + head.bias
    assert logits.shape == (1, 12, len(model.alphabet)) and torch.allclose(logits, expected, atol=1e-5)


def test_cli_builds_all_three_and_skips_existing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sepit.tiny.builders.default_corpus", lambda: CORPUS)  # the SP14 corpus: test above
    main([str(tmp_path)])
    printed = capsys.readouterr().out
    for name in ("llm", "text_encoder", "esm2.pt"):
        assert str(tmp_path / name) in printed
    AutoModelForCausalLM.from_pretrained(tmp_path / "llm")
    AutoModel.from_pretrained(tmp_path / "text_encoder")
    esm2_from_checkpoint(tmp_path / "esm2.pt")
    readme = tmp_path / "llm" / "README.md"
    readme.write_text("stale")
    main([str(tmp_path)])
    assert readme.read_text() == "stale"  # kept
    main([str(tmp_path), "--force"])
    assert "random" in readme.read_text()  # rebuilt
