"""The protein-language model glue (sepit/models/network.py): special tokens, prompts, splicing, loss and
batched generation, on a tiny random Llama and a word-level tokenizer trained here, both loaded from disk."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from sepit.data.protein import make_protein
from sepit.data.sample import make_sample
from sepit.models.encoder import StructureAwareESM, esm2_tiny
from sepit.interface import GenerationSettings
from sepit.models.decoding import position_ids_from_mask
from sepit.models.network import SplicedLanguageModel, TextLanguageModel
from sepit.models.projector import Projector
from sepit.models.prompts import build_prompt
from sepit.models.splice import IGNORE_INDEX, splice_embeddings
from sepit.models.tokens import TokenEmbeddingSettings, add_protein_tokens
from sepit.models.qformer import QFormerSettings
from sepit.tiny.builders import build_tiny_llm

CORPUS = [
    "what does this protein do",
    "describe the function of the protein in one sentence",
    "is this protein an enzyme answer yes or no",
    "it binds dna and regulates transcription",
    "yes it is a kinase",
    "no",
]
TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {{ eos_token }} "
            "{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}")


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    """A word-level tokenizer (pad == eos, as many chat models ship) and a 2-layer Llama, saved to disk."""
    path = tmp_path_factory.mktemp("llm")
    specials = ["<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>"]
    raw = Tokenizer(models.WordLevel(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=specials))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", bos_token="<s>",
                                        eos_token="</s>", pad_token="</s>",
                                        extra_special_tokens=["<|user|>", "<|assistant|>"])
    tokenizer.chat_template = TEMPLATE
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def _load(path):
    return AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)


def _coords(length, seed):
    steps = np.random.default_rng(seed).normal(size=(length, 3))
    return np.cumsum(3.8 * steps / np.linalg.norm(steps, axis=1, keepdims=True), axis=0).astype(np.float32)


def _samples():
    """Three samples whose prompts and proteins all differ in length."""
    return [
        make_sample("a", "t", make_protein("a", "MKTAYIAKQR", _coords(10, 1)), "what does <protein> do",
                    "it binds dna and regulates transcription"),
        make_sample("b", "t", make_protein("b", "GSHM"), "is <protein> an enzyme answer yes or no", "no"),
        make_sample("c", "t", make_protein("c", "ACDEFGHIKLMNPQ", _coords(14, 2)),
                    "describe the function of the protein <protein> in one sentence", "yes it is a kinase"),
    ]


def _model(llm_dir, kind="mlp"):
    tokenizer, llm = _load(llm_dir)
    torch.manual_seed(0)
    encoder = StructureAwareESM(esm2_tiny(), num_kernels=16)
    return SplicedLanguageModel(encoder, llm, tokenizer, projector=kind).eval()


def test_projector_kinds():
    x, padding = torch.randn(2, 5, 8), torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    out, keep = Projector(8, 16, "mlp")(x, padding)
    assert out.shape == (2, 5, 16) and keep.tolist() == (~padding).tolist()
    assert len(list(Projector(8, 16, "mlp").parameters())) == 4
    assert isinstance(Projector(8, 16, "linear").net, torch.nn.Linear)
    with pytest.raises(ValueError, match="mlp"):
        Projector(8, 16, "conv")


def test_protein_tokens_and_distinct_pad_survive_a_reload(llm_dir, tmp_path):
    tokenizer, llm = _load(llm_dir)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    ids = add_protein_tokens(tokenizer, llm)
    assert tokenizer.pad_token == "<pad>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert len({ids.protein, ids.bop, ids.eop, tokenizer.pad_token_id}) == 4
    assert llm.get_input_embeddings().num_embeddings == len(tokenizer)
    assert llm.get_output_embeddings().out_features == len(tokenizer)  # untied: the head grew too
    assert tokenizer("a <protein> b", add_special_tokens=False)["input_ids"][1] == ids.protein

    tokenizer.save_pretrained(tmp_path)
    llm.save_pretrained(tmp_path)
    tokenizer2, llm2 = _load(tmp_path)
    assert add_protein_tokens(tokenizer2, llm2) == ids  # idempotent: nothing new, same ids
    assert len(tokenizer2) == len(tokenizer)
    assert tokenizer2.pad_token_id == tokenizer.pad_token_id != tokenizer2.eos_token_id
    assert llm2.get_input_embeddings().num_embeddings == len(tokenizer)
    assert torch.equal(llm2.get_input_embeddings().weight, llm.get_input_embeddings().weight)


def _resize_notices(run):
    """The warnings transformers' resizing logs while `run()` runs, its once-only cache cleared first."""
    import logging

    from transformers.utils import logging as hf_logging

    hf_logging.warning_once.cache_clear()
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("transformers.modeling_utils")
    logger.addHandler(handler)
    # Another test may have turned transformers' logging down (the CLI does): warnings must get through here.
    level, root_level = logger.level, hf_logging.get_verbosity()
    logger.setLevel(logging.WARNING)
    hf_logging.set_verbosity_warning()
    try:
        run()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        hf_logging.set_verbosity(root_level)
    return [r.getMessage() for r in records if "initialized from" in r.getMessage()]


@pytest.mark.parametrize("init", ["mean", "normal"])
def test_new_token_rows_and_padding(llm_dir, init):
    """`normal` draws the new rows (both tables, padding rows included) from N(0, initializer_range), as
    transformers 4.39 did; `mean` puts them at the old rows' mean. The tables are padded to a multiple of 8; the
    old rows are kept; no resize notice is printed."""
    tokenizer, llm = _load(llm_dir)
    old_in, old_out = llm.get_input_embeddings().weight.clone(), llm.get_output_embeddings().weight.clone()
    vocab = len(tokenizer)
    llm.config.initializer_range = 0.3  # far from both the old rows' spread and nn.Embedding's own N(0, 1)
    torch.manual_seed(0)
    notices = _resize_notices(lambda: add_protein_tokens(tokenizer, llm, embeddings=TokenEmbeddingSettings(init, 8)))
    assert notices == []
    assert len(tokenizer) == vocab + 4  # <protein> <bop> <eop> <pad>
    rows = -(-(vocab + 4) // 8) * 8
    for table, old in ((llm.get_input_embeddings().weight, old_in), (llm.get_output_embeddings().weight, old_out)):
        assert table.shape == (rows, 32) and torch.equal(table[:vocab], old)
        new = table[vocab:].detach()  # (rows - vocab, 32)
        if init == "normal":
            assert abs(new.mean()) < 0.05 and 0.25 < new.std() < 0.35
        else:
            torch.testing.assert_close(new, old.mean(dim=0).expand_as(new), rtol=0, atol=1e-3)
    assert llm.config.vocab_size == rows
    _, control = _load(llm_dir)  # what the same resize prints when called directly
    assert len(_resize_notices(lambda: control.resize_token_embeddings(vocab + 4))) == 2


def test_token_embedding_settings_refuse_what_cannot_be_built():
    from sepit.errors import InputError

    with pytest.raises(InputError, match="token_embeddings.init: must be mean or normal"):
        TokenEmbeddingSettings("zeros").check("token_embeddings")
    with pytest.raises(InputError, match="token_embeddings.pad_to_multiple_of: must be 1 or more"):
        TokenEmbeddingSettings("normal", 0).check("token_embeddings")


def test_padded_tables_survive_the_checkpoint_record(llm_dir):
    """A spliced model whose tables were padded to a multiple of 8 rebuilds from its record and tokenizer at the
    padded size (the tokenizer is shorter: nothing is resized again) and takes its own state dict."""
    from sepit.checkpoints.stage import build_from_record, model_record

    tokenizer, llm = _load(llm_dir)
    torch.manual_seed(0)
    model = SplicedLanguageModel(StructureAwareESM(esm2_tiny(), num_kernels=4), llm, tokenizer,
                                 token_embeddings=TokenEmbeddingSettings("normal", 8))
    rows = llm.get_input_embeddings().num_embeddings
    assert rows % 8 == 0 and rows > len(tokenizer)
    rebuilt = build_from_record(model_record(model), tokenizer)
    assert rebuilt.llm.get_input_embeddings().num_embeddings == rebuilt.llm.get_output_embeddings().out_features \
        == rows
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.token_ids == model.token_ids


def test_build_prompt_masks_only_the_answer_and_its_eos(llm_dir):
    tokenizer, llm = _load(llm_dir)
    add_protein_tokens(tokenizer, llm)
    prompt, prompt_mask = build_prompt(tokenizer, "what does <protein> do")
    ids, mask = build_prompt(tokenizer, "what does <protein> do", "yes it is")
    assert not prompt_mask.any()
    assert tokenizer.decode(prompt) == "<s> <|user|> what does <protein> do </s> <|assistant|>"
    assert torch.equal(ids[: len(prompt)], prompt)  # training continues exactly the generation prompt
    answer = tokenizer("yes it is", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert ids[mask].tolist() == answer and mask[len(prompt):].all()
    with pytest.raises(ValueError, match="exactly one"):
        build_prompt(tokenizer, "no placeholder here")


def test_splice_places_bop_protein_vectors_eop_with_left_padding(llm_dir):
    model, samples = _model(llm_dir), _samples()
    batch = model.collate(samples)
    with torch.no_grad():
        encoded = model.encoder(batch["tokens"], batch["coords"], batch["observed"])
        protein, _ = model.projector(encoded["features"], encoded["padding_mask"])  # (B, T, H)
        embeds, attention, labels = model.embed(batch)
    table, ids = model.llm.get_input_embeddings().weight, model.token_ids
    lengths = attention.sum(1)
    assert len(set(lengths.tolist())) == 3  # really padded, on the left
    for i, (sample, prompt) in enumerate(zip(samples, batch["input_ids"])):
        n = len(sample.protein) + 2  # every residue plus BOS/EOS
        pad = attention.shape[1] - int(lengths[i])
        assert attention[i, :pad].eq(0).all() and attention[i, pad:].eq(1).all()
        assert int(lengths[i]) == len(prompt) - 1 + n + 2
        at = pad + int((prompt == ids.protein).nonzero())
        row = embeds[i]
        assert torch.equal(row[:pad], torch.zeros_like(row[:pad]))
        assert torch.equal(row[pad:at], table[prompt[: at - pad]])
        assert torch.equal(row[at], table[ids.bop])
        assert torch.equal(row[at + 1: at + 1 + n], protein[i, :n])
        assert torch.equal(row[at + 1 + n], table[ids.eop])
        assert torch.equal(row[at + 2 + n:], table[prompt[at - pad + 1:]])
        assert labels[i, : at + 2 + n].eq(IGNORE_INDEX).all()

    # Called directly: a mask that keeps 2 of 4 positions splices exactly those two vectors.
    vectors = torch.randn(1, 4, 32)
    out, mask, _ = splice_embeddings([torch.tensor([5, ids.protein, 6])], vectors,
                                     torch.tensor([[True, False, True, False]]), model.llm.get_input_embeddings(),
                                     ids.protein, ids.bop, ids.eop)
    assert out.shape == (1, 6, 32) and mask.all()
    assert torch.equal(out[0, 2], vectors[0, 0]) and torch.equal(out[0, 3], vectors[0, 2])


def test_labels_and_loss_cover_only_answer_tokens(llm_dir):
    model, samples = _model(llm_dir), _samples()
    batch = model.collate(samples)
    with torch.no_grad():
        embeds, attention, labels = model.embed(batch)
        loss, per_answer = model(batch), model(batch, average="answers")
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        logits = model.llm(inputs_embeds=embeds, attention_mask=attention, position_ids=positions).logits
    eos = model.tokenizer.eos_token_id
    terms = []  # one list of token losses per answer
    for i, sample in enumerate(samples):
        answer = model.tokenizer(sample.reference, add_special_tokens=False)["input_ids"] + [eos]
        kept = labels[i].ne(IGNORE_INDEX).nonzero().flatten()
        assert labels[i, kept].tolist() == answer
        assert kept.tolist() == list(range(labels.shape[1] - len(answer), labels.shape[1]))  # the tail
        terms.append([-F.log_softmax(logits[i, t - 1], dim=-1)[labels[i, t]] for t in kept.tolist()])
    assert len({len(answer) for answer in terms}) > 1  # answers of different lengths weigh differently
    assert torch.allclose(loss, torch.stack([t for answer in terms for t in answer]).mean(), atol=1e-6)
    assert torch.allclose(per_answer, torch.stack([torch.stack(answer).mean() for answer in terms]).mean(), atol=1e-6)
    with pytest.raises(ValueError, match="average"):
        model(batch, average="samples")


def test_loss_decreases_when_overfitting_one_batch(llm_dir):
    model = _model(llm_dir, kind="linear").train()
    batch = model.collate(_samples())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = model(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def _ids(model, samples, config):
    """The new token ids per sample."""
    return [ids for ids, _ in model.generate_tokens(samples, config)]


def test_batched_greedy_generation_equals_one_at_a_time(llm_dir):
    model, samples = _model(llm_dir), _samples()
    config = GenerationSettings(max_new_tokens=8)
    _, attention, _ = model.embed(model.collate(samples, with_answers=False))
    assert len(set(attention.sum(1).tolist())) == 3 and attention[:, 0].eq(0).any()  # left padding in use

    batched = _ids(model, samples, config)
    alone = [_ids(model, [s], config)[0] for s in samples]
    for together, single in zip(batched, alone):
        assert together.tolist() == single.tolist()
    assert any(len(ids) > 1 for ids in batched)  # something was generated, not only an instant eos

    # Per-token logprobs: the same ids, and one natural-log probability per token, equal alone or batched.
    with_logprobs = model.generate_tokens(samples, dataclasses.replace(config, logprobs=True))
    assert [ids.tolist() for ids, _ in with_logprobs] == [ids.tolist() for ids in alone]
    for (ids, logprobs), single in zip(with_logprobs, samples):
        (_, reference), = model.generate_tokens([single], dataclasses.replace(config, logprobs=True))
        assert logprobs.shape == ids.shape and bool((logprobs <= 0).all())
        assert torch.allclose(logprobs, reference, atol=1e-5)
    # ... and they are what the model gives those tokens when they are teacher-forced after the prompt.
    ids, logprobs = with_logprobs[0]
    embeds, mask, _ = model.embed(model.collate(samples[:1], with_answers=False))
    forced = torch.cat([embeds, model.llm.get_input_embeddings()(ids[None, :-1])], dim=1)
    mask = torch.cat([mask, mask.new_ones(1, len(ids) - 1)], dim=1)
    with torch.no_grad():
        logits = model.llm(inputs_embeds=forced, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
    forced_logprobs = logits[0, -len(ids):].float().log_softmax(-1).gather(1, ids[:, None]).squeeze(1)
    assert torch.allclose(forced_logprobs, logprobs, atol=1e-4)
    texts = [model.decode(ids) for ids, _ in model.generate_tokens(samples, config)]
    assert texts == [model.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in alone]
    assert not model.training


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_every_decoder_family_answers_the_same_alone_or_batched(family, tmp_path):
    """Training pads right, generation left; either way a sample's numbers do not depend on its batch mates."""
    path = build_tiny_llm(tmp_path / family, family=family, hidden_size=32, corpus=CORPUS)
    tokenizer, llm = _load(path)
    torch.manual_seed(0)
    model = SplicedLanguageModel(StructureAwareESM(esm2_tiny(), num_kernels=16), llm, tokenizer).eval()
    samples = _samples()
    sides, embed = [], model.embed
    model.embed = lambda batch, padding_side="left": sides.append(padding_side) or embed(batch, padding_side)
    _, attention, _ = embed(model.collate(samples), padding_side="right")
    assert attention[:, -1].eq(0).any() and attention[:, 0].eq(1).all()
    together = model.answer_log_likelihoods(samples)
    alone = torch.cat([model.answer_log_likelihoods([s]) for s in samples])
    assert torch.allclose(together, alone, atol=1e-4)
    config = GenerationSettings(max_new_tokens=6)
    batched = _ids(model, samples, config)
    assert [ids.tolist() for ids in batched] == [_ids(model, [s], config)[0].tolist() for s in samples]
    assert set(sides[:4]) == {"right"} and set(sides[4:]) == {"left"}  # losses pad right, generation left


@pytest.fixture(scope="module")
def bpe_llm_dir(tmp_path_factory):
    """A tiny Llama with the byte-level tokenizer of the tiny models: any text, sequences included, round-trips."""
    return build_tiny_llm(tmp_path_factory.mktemp("bpe") / "llm", hidden_size=32, corpus=CORPUS)


def test_sequence_as_text_writes_the_formatted_sequence_and_answers_alone_or_batched(bpe_llm_dir):
    tokenizer, llm = _load(bpe_llm_dir)
    model = TextLanguageModel(llm, tokenizer, sequence_format="galactica", max_residues=8).eval()
    assert "<protein>" not in tokenizer.get_vocab()
    samples = _samples()
    batch = model.collate(samples)
    assert set(batch) == {"input_ids", "answer_masks"}  # no encoder inputs
    prompt = tokenizer.decode(batch["input_ids"][0])
    assert "what does [START_AMINO]MKTAYIAK[END_AMINO] do" in prompt  # cut at max_residues
    _, _, labels = model.embed(batch, padding_side="right")
    for i, sample in enumerate(samples):  # loss on exactly the answer and its eos
        answer = tokenizer(sample.reference, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        assert labels[i][labels[i] != IGNORE_INDEX].tolist() == answer
    together = model.answer_log_likelihoods(samples)
    assert torch.allclose(together, torch.cat([model.answer_log_likelihoods([s]) for s in samples]), atol=1e-4)
    config = GenerationSettings(max_new_tokens=5)
    batched = _ids(model, samples, config)
    assert [ids.tolist() for ids in batched] == [_ids(model, [s], config)[0].tolist() for s in samples]
    with pytest.raises(ValueError, match="galactica"):
        TextLanguageModel(llm, tokenizer, sequence_format="fasta")


def test_qformer_projector_splices_num_queries_vectors(bpe_llm_dir):
    tokenizer, llm = _load(bpe_llm_dir)
    torch.manual_seed(0)
    model = SplicedLanguageModel(StructureAwareESM(esm2_tiny(), num_kernels=16), llm, tokenizer, projector="qformer",
                                 qformer=QFormerSettings(num_queries=3, num_layers=1, num_heads=4)).eval()
    samples = _samples()
    batch = model.collate(samples)
    _, attention, _ = model.embed(batch, padding_side="right")
    # Each <protein> becomes <bop> + 3 query vectors + <eop>, whatever the protein's length.
    assert attention.sum(1).tolist() == [len(ids) - 1 + 3 + 2 for ids in batch["input_ids"]]
    together = model.answer_log_likelihoods(samples)
    assert torch.allclose(together, torch.cat([model.answer_log_likelihoods([s]) for s in samples]), atol=1e-4)
    with pytest.raises(ValueError, match="qformer"):
        SplicedLanguageModel(StructureAwareESM(esm2_tiny(), num_kernels=16), llm, tokenizer, projector="mlp",
                             qformer=QFormerSettings(num_queries=3))


def test_a_tokenizer_without_chat_template_gets_the_plain_instruction_layout(bpe_llm_dir):
    from tokenizers import processors

    tokenizer, _ = _load(bpe_llm_dir)
    tokenizer.chat_template = None  # a base model (Galactica, LLaMA)
    ids, mask = build_prompt(tokenizer, "what does MKV do", "no", protein_token=False)
    assert tokenizer.decode(ids[~mask]) == "### Instruction:\nwhat does MKV do\n\n### Response:\n"
    assert tokenizer.decode(ids[mask]) == "no</s>"
    # BOS where the tokenizer itself adds one (LLaMA-style), and only then.
    tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokenizer.bos_token_id)])
    with_bos, _ = build_prompt(tokenizer, "what does MKV do", "no", protein_token=False)
    assert with_bos[0] == tokenizer.bos_token_id and with_bos[1:].tolist() == ids.tolist()


def test_an_eos_missing_from_the_tokenizer_comes_from_the_model_config(bpe_llm_dir):
    tokenizer, llm = _load(bpe_llm_dir)
    eos = tokenizer.eos_token_id
    tokenizer.eos_token = None  # as Galactica's tokenizer ships
    TextLanguageModel(llm, tokenizer)
    assert tokenizer.eos_token_id == eos == llm.config.eos_token_id
    tokenizer.eos_token, llm.config.eos_token_id, llm.generation_config.eos_token_id = None, None, None
    with pytest.raises(ValueError, match="end-of-sequence"):
        TextLanguageModel(llm, tokenizer)
