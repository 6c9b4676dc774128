"""The `evolla` baseline (baselines/evolla.py) on a tiny random Evolla built here: answers against transformers'
own `generate` one sample at a time (and a cache-free greedy loop), the 3Di string the processor receives,
refused 3Di strings, choice scores against transformers' loss, and the fingerprint."""

from pathlib import Path

import pytest
import torch
from transformers import (EsmTokenizer, EvollaConfig, EvollaForProteinText2Text, EvollaProcessor,
                          GenerationConfig as HFGenerationConfig)

from sepit.commands.bench import build_model
from sepit.data.errors import DataError
from sepit.data.protein import make_protein
from sepit.data.sample import make_sample
from sepit.interface import GenerationSettings
from sepit.tiny.builders import build_tiny_tokenizer
from sepit_baselines.evolla import SYSTEM_PROMPT, evolla_question

# SaProt's vocabulary: five specials, then every amino acid (and '#') paired with every 3Di state (and '#').
SAPROT_SPECIALS = ["<cls>", "<pad>", "<eos>", "<unk>", "<mask>"]
AMINO_ACIDS, STATES = "ACDEFGHIKLMNPQRSTVWY#", "pynwrqhgdlvtmfsaeikc#"
PAD = "<|reserved_special_token_0|>"  # the processor sets it as the pad token, so the tokenizer must have it
CORPUS = ["What is the function of this protein?", "Describe the enzyme.", "Is this protein a membrane protein?",
          "yes", "no", "It binds DNA and catalyzes the hydrolysis of ATP.", SYSTEM_PROMPT]


def build_tiny_evolla(folder: Path, seed: int = 0) -> Path:
    """A random Evolla (2 decoder layers, both with protein cross-attention; a 2-layer SaProt) and its processor,
    saved to `folder`. The cross-attention gates start at 0 (transformers' init), which would hide the protein:
    they are set to 1."""
    vocab = folder.parent / f"{folder.name}-saprot-vocab.txt"
    vocab.write_text("\n".join(SAPROT_SPECIALS + [a + s for a in AMINO_ACIDS for s in STATES]) + "\n")
    tokenizer = build_tiny_tokenizer(CORPUS, vocab_size=400)
    tokenizer.add_special_tokens({"additional_special_tokens": [PAD]})
    EvollaProcessor(EsmTokenizer(str(vocab)), tokenizer).save_pretrained(folder)
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.convert_tokens_to_ids(PAD)}
    config = EvollaConfig(
        protein_encoder_config={"vocab_size": 446, "hidden_size": 32, "num_hidden_layers": 2,
                                "num_attention_heads": 4, "intermediate_size": 64},
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, aligner_num_add_layers=2,
        resampler_depth=1, resampler_dim_head=8, resampler_heads=2, resampler_num_latents=4, resampler_ff_mult=1,
        **ids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = EvollaForProteinText2Text(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "adapter.gate" in name:
                parameter.fill_(1.0)
    model.generation_config = HFGenerationConfig(**ids)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return build_tiny_evolla(tmp_path_factory.mktemp("evolla") / "model")


@pytest.fixture(scope="module")
def evolla(folder):
    return build_model("evolla", {"model": str(folder)})


def sample(id: str, sequence: str, instruction: str, foldseek: str | None = None, choices=None, reference="yes"):
    metadata = {} if foldseek is None else {"foldseek": foldseek}
    return make_sample(id, "t", make_protein(f"p-{id}", sequence), instruction, reference, choices, metadata)


# (sample, the question and the 3Di string Evolla should receive), written out independently of the adapter.
CASES = [
    (sample("s1", "MKVLAAGIWK", "What is the function of <protein>?", "dvvpqcllsa"),
     "What is the function of this protein?", "dvvpqcllsa"),
    (sample("s2", "MKKLLPEGHHHHHAAAADW", "Describe the enzyme <protein>."),
     "Describe the enzyme.", "#" * 19),
    (sample("s3", "ACDEFGHIK", "<protein> binds what?", "DDPPVVQQA"),
     "This protein binds what?", "ddppvvqqa"),
    (sample("s4", "MSTNPKPQRKTKRNTNRRPQDVKFPGG", "Is <protein> a membrane protein? Answer yes or no."),
     "Is this protein a membrane protein? Answer yes or no.", "#" * 27),
]


def reference_answer(processor, model, sequence: str, foldseek: str, question: str, max_new_tokens: int) -> str:
    """transformers' own path for one sample: the processor, greedy `generate`, the new tokens up to eos."""
    inputs = processor(proteins=[{"aa_seq": sequence, "foldseek": foldseek}],
                       messages_list=[[{"role": "system", "content": SYSTEM_PROMPT},
                                       {"role": "user", "content": question}]])
    new = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    return processor.tokenizer.decode(reference_tokens(new.tolist(), model), skip_special_tokens=True).strip()


def reference_tokens(tokens: list[int], model) -> list[int]:
    eos = model.generation_config.eos_token_id
    return tokens[:tokens.index(eos)] if eos in tokens else tokens


def test_greedy_answers_equal_transformers_generate_one_at_a_time(evolla, folder):
    processor = EvollaProcessor.from_pretrained(folder, local_files_only=True)
    model = EvollaForProteinText2Text.from_pretrained(folder, local_files_only=True).eval()
    answers = evolla.generate([case[0] for case in CASES], GenerationSettings(max_new_tokens=10))
    expected = [reference_answer(processor, model, s.protein.sequence, foldseek, question, 10)
                for s, question, foldseek in CASES]
    assert answers == expected
    assert sum(bool(answer) for answer in answers) >= 2  # not a vacuous match of empty answers


def test_cached_generate_equals_a_greedy_loop_without_cache(folder):
    """The cross-attention reuses the full text mask as its query mask; with the KV cache that is only right
    for an unpadded single sample. Check that case against full forward passes and argmax."""
    processor = EvollaProcessor.from_pretrained(folder, local_files_only=True)
    model = EvollaForProteinText2Text.from_pretrained(folder, local_files_only=True).eval()
    inputs = processor(proteins=[{"aa_seq": "MKVLAAGIWK", "foldseek": "dvvpqcllsa"}],
                       messages_list=[[{"role": "user", "content": "What is the function of this protein?"}]])
    length = inputs["input_ids"].shape[1]
    cached = model.generate(**inputs, max_new_tokens=6, do_sample=False, min_new_tokens=6)[0, length:]
    ids = inputs["input_ids"]
    with torch.no_grad():
        for _ in range(6):
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False,
                           protein_input_ids=inputs["protein_input_ids"],
                           protein_attention_mask=inputs["protein_attention_mask"]).logits
            logits[:, -1, model.generation_config.eos_token_id] = float("-inf")  # as min_new_tokens does
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert cached.tolist() == ids[0, length:].tolist()


def test_sampling_is_reproducible_with_its_seed(evolla):
    config = GenerationSettings(max_new_tokens=6, do_sample=True, seed=3)
    samples = [case[0] for case in CASES[:2]]
    assert evolla.generate(samples, config) == evolla.generate(samples, config)


def test_processor_receives_the_metadata_3di_or_the_mask(evolla):
    with_3di = sample("a", "MKVLX", "What is <protein>?", "DvPqC")
    without = sample("b", "MKV", "What is <protein>?")
    inputs = evolla.encode([with_3di, without])
    tokens = [evolla.processor.protein_tokenizer.convert_ids_to_tokens(row) for row in inputs["protein_input_ids"]]
    assert tokens[0] == ["<cls>", "Md", "Kv", "Vp", "Lq", "#c", "<eos>"]  # X: SaProt's masked amino acid
    assert tokens[1][:5] == ["<cls>", "M#", "K#", "V#", "<eos>"]
    assert "<unk>" not in tokens[0]


def test_max_residues_crops_sequence_and_3di_together(folder):
    model = build_model("evolla", {"model": str(folder), "max_residues": 3})
    inputs = model.encode([sample("a", "MKVLA", "What is <protein>?", "dvpqc")])
    tokens = model.processor.protein_tokenizer.convert_ids_to_tokens(inputs["protein_input_ids"][0])
    assert tokens == ["<cls>", "Md", "Kv", "Vp", "<eos>"]


@pytest.mark.parametrize("foldseek, problem", [("dvp", "3 3Di letters for a sequence of 5 residues"),
                                               ("dvpq1", "not 3Di states: '1'"), (42, "must be a 3Di string")])
def test_bad_3di_is_refused_naming_the_sample(evolla, foldseek, problem):
    bad = make_sample("bad-3di", "t", make_protein("p", "MKVLA"), "What is <protein>?", "x",
                      metadata={"foldseek": foldseek})
    with pytest.raises(DataError, match="sample 'bad-3di'") as error:
        evolla.generate([bad], GenerationSettings(max_new_tokens=2))
    assert problem in str(error.value)


def test_choice_loglikelihoods_equal_transformers_loss(evolla, folder):
    processor = EvollaProcessor.from_pretrained(folder, local_files_only=True)
    model = EvollaForProteinText2Text.from_pretrained(folder, local_files_only=True).eval()
    closed = sample("c", "MKVLAAGIWK", "Is <protein> a membrane protein?", "dvvpqcllsa", choices=("yes", "no"),
                    reference="no")
    scores = evolla.loglikelihood([closed])[0]
    inputs = processor(proteins=[{"aa_seq": "MKVLAAGIWK", "foldseek": "dvvpqcllsa"}],
                       messages_list=[[{"role": "system", "content": SYSTEM_PROMPT},
                                       {"role": "user", "content": "Is this protein a membrane protein?"}]])
    prompt = inputs["input_ids"]
    for choice, score in zip(closed.choices, scores):
        answer = processor.tokenizer(choice, add_special_tokens=False)["input_ids"] + [processor.tokenizer.eos_token_id]
        ids = torch.cat([prompt, torch.tensor([answer])], dim=1)
        labels = torch.cat([torch.full_like(prompt, -100), torch.tensor([answer])], dim=1)
        with torch.no_grad():
            loss = model(input_ids=ids, labels=labels, protein_input_ids=inputs["protein_input_ids"],
                         protein_attention_mask=inputs["protein_attention_mask"]).loss
        assert score == pytest.approx(-loss.item() * len(answer), abs=1e-4)
    assert evolla.supports_loglikelihood


def test_fingerprint_follows_weights_and_settings(tmp_path):
    folder = build_tiny_evolla(tmp_path / "model", seed=0)
    card = build_model("evolla", {"model": str(folder)}).describe()
    assert card.modality == "seq+structure" and card.name == "evolla"
    assert card.params_total == card.params_active == sum(
        p.numel() for p in EvollaForProteinText2Text.from_pretrained(folder, local_files_only=True).parameters())

    def fingerprint(**settings) -> str:
        return build_model("evolla", {"model": str(folder), **settings}).describe().fingerprint

    assert fingerprint() == card.fingerprint
    assert fingerprint(max_residues=100) != card.fingerprint
    assert fingerprint(foldseek_field="3di") != card.fingerprint
    assert fingerprint(dtype="bfloat16") != card.fingerprint
    build_tiny_evolla(folder, seed=1)  # other weights in the same folder
    assert fingerprint() != card.fingerprint


def test_a_folder_of_another_model_is_refused(tmp_path):
    from sepit.tiny.builders import build_tiny_llm

    llm = build_tiny_llm(tmp_path / "llm", corpus=CORPUS)
    with pytest.raises(DataError, match="holds a llama model, not Evolla"):
        build_model("evolla", {"model": str(llm)})


@pytest.mark.parametrize("instruction, question", [
    ("What is the function of <protein>?", "What is the function of this protein?"),
    ("Describe the function of the protein <protein>.", "Describe the function of the protein."),
    ("Classify the enzyme <protein> by its EC class.", "Classify the enzyme by its EC class."),
    ("<protein> is found where?", "This protein is found where?"),
    ("It is a kinase. <protein> binds what?", "It is a kinase. This protein binds what?"),
    ("Which option fits?\n<protein>\nA. yes\nB. no", "Which option fits?\nA. yes\nB. no"),
])
def test_placeholder_becomes_evollas_wording(instruction, question):
    assert evolla_question(instruction) == question


def test_bad_3di_stops_the_run_before_predicting(evolla):
    from sepit.tasks import Task

    good = sample("good", "MKVLA", "What is <protein>?", foldseek="dvpqa")
    bad = make_sample("late-bad", "t", make_protein("p2", "MKVLA"), "What is <protein>?", "x",
                      metadata={"foldseek": "dvp"})
    task = Task("t", "1", "open", "", "free_text", build=lambda: {"test": [good, bad]})
    with pytest.raises(DataError, match="sample 'late-bad'.*3 3Di letters for a sequence of 5 residues"):
        evolla.prepare([task])
