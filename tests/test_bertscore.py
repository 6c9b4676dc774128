"""BERTScore (sepit/metrics/bertscore.py) against the `bert-score` package called the way the official evaluation
calls it, on a tiny BERT the test builds; the refusal without a model; the fingerprint in results.json; the board.

Why not torchmetrics: on these pairs in one call, `torchmetrics.functional.text.bert.bert_score(cands, refs,
model_name_or_path=DIR, num_layers=3, idf=False)` gave values 0.002 to 0.18 away from bert-score's (0-1 scale)
where sepit's are within 3e-7.
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from sepit.cli import main
from sepit.data.errors import DataError
from sepit.evaluation.scoring import ScoringSettings
from sepit.metrics.bertscore import OFFICIAL_MODEL, BertScorer

WORDS = ("the a protein kinase binds atp and is located in membrane nucleus cytoplasm enzyme catalyzes reaction of "
         "with to function process activity it this that phosphorylates histone").split()
PAIRS = [  # (answer, reference); the last answer is 720 WordPiece tokens, over the official cut of 500
    ("The protein binds ATP.", "A kinase that binds ATP and is located in the membrane."),
    ("It is located in the mitochondrion", "mitochondrion"),
    ("kinase activity", "Catalyzes the reaction of ATP with histone."),
    ("zzz qqq", "enzyme"),
    ("the protein kinase binds atp, " * 120, "the enzyme " * 300),
]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 3-layer BERT with a WordPiece vocabulary, saved like PubMedBERT's folder (no model_max_length)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_bert")
    pieces = ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"] + ["##s", "##ing", "##ase", "mito", "##chon", "##dri"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *WORDS, *"abcdefghijklmnopqrstuvwxyz", *pieces]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=512, initializer_range=0.3)
    BertModel(config).save_pretrained(folder)
    return folder


def official_bertscore(folder, pairs):
    """evaluate_task.py's calls: the texts cut to 500 tokens and decoded, one pair per bert_score call."""
    from bert_score import BERTScorer
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    cut = lambda text: tokenizer.decode(tokenizer.encode(text, max_length=500, truncation=True,  # noqa: E731
                                                         add_special_tokens=False))
    scorer = BERTScorer(model_type=str(folder), num_layers=3, idf=False, rescale_with_baseline=False)
    scorer._tokenizer.model_max_length = 512  # recent tokenizers refuse the unset default as max_length
    return np.array([[float(v) * 100 for v in scorer.score([cut(a)], [cut(r)])] for a, r in pairs])


def test_equal_to_bert_score_as_the_official_evaluation_calls_it(tiny_bert):
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(tiny_bert).tokenize(PAIRS[-1][0])) > 500
    scorer = BertScorer(tiny_bert)
    got = scorer.per_sample([a for a, _ in PAIRS], [r for _, r in PAIRS])
    expected = official_bertscore(tiny_bert, PAIRS)
    for column, name in enumerate(("bertscore_precision", "bertscore_recall", "bertscore_f1")):
        np.testing.assert_allclose(got[name], expected[:, column], rtol=0, atol=1e-6 * 100)  # 1e-6 on 0-1
    assert len(set(np.round(expected[:, 2], 3))) == len(PAIRS)  # the pairs score differently
    empty = scorer.per_sample(["", "  "], ["protein", ""])  # bert_score's rule: an empty text scores 0
    assert all((values == 0).all() for values in empty.values())
    assert scorer.record()["layer"] == 3 and scorer.record()["max_tokens"] == 500


def test_asking_without_a_model_stops_before_predicting(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["bench", "--model", "majority", "--tasks", "sp14_membrane", "--output", str(tmp_path / "run"),
              "--scoring.bertscore", "true"])
    assert exit.value.code == 1
    err = capsys.readouterr().err
    assert "--scoring.bertscore_model" in err and OFFICIAL_MODEL in err and "hf download" in err, err
    assert not (tmp_path / "run" / "predictions").exists()
    with pytest.raises(DataError, match="no config.json"):
        ScoringSettings(bertscore_model=tmp_path)
    assert ScoringSettings().bertscore is False


def test_the_settings_import_no_deep_learning_framework(tiny_bert):
    code = ("import sys; from sepit.evaluation.scoring import ScoringSettings; "
            f"assert ScoringSettings(bertscore_model={str(tiny_bert)!r}).bertscore; "
            "print([m for m in ('torch', 'transformers', 'bert_score') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow  # ~18 s: scoring loads WordNet for METEOR
def test_results_record_the_model_and_the_board_refuses_two_models(tiny_bert, tmp_path):
    from sepit_leaderboard.board import build_board
    from sepit_leaderboard.results import load_run

    rows = [{"task": "my_open", "id": f"o{i}", "prediction": a, "reference": r, "kind": "open", "choices": None}
            for i, (a, r) in enumerate(PAIRS)]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    main(["score", "--predictions", str(tmp_path / "p.jsonl"), "--output", str(tmp_path / "a" / "results.json"),
          "--scoring.bertscore_model", str(tiny_bert), "--scoring.n_resamples", "50"])
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    record = results["metric_profile"]["bertscore"]
    assert record["layer"] == 3 and len(record["fingerprint"]) == 64 and "config.json" in record["files"]
    task = results["tasks"]["my_open"]
    expected = official_bertscore(tiny_bert, PAIRS)
    assert task["metrics"]["bertscore_f1"] == pytest.approx(expected[:, 2].mean(), abs=1e-4)
    lo, hi = task["ci"]["bertscore_f1"]
    assert lo <= task["metrics"]["bertscore_f1"] <= hi
    logs = [json.loads(line) for line in (tmp_path / "a" / "samples" / "my_open.jsonl").read_text().splitlines()]
    assert [log["bertscore_f1"] for log in logs] == pytest.approx(list(expected[:, 2]), abs=1e-4)

    shutil.copytree(tmp_path / "a", tmp_path / "b")
    other = json.loads((tmp_path / "b" / "results.json").read_text())
    other["model"]["name"] = "other"
    other["metric_profile"]["bertscore"]["fingerprint"] = "0" * 64  # scored with another model
    (tmp_path / "b" / "results.json").write_text(json.dumps(other))
    with pytest.raises(DataError, match="BERTScores of different models"):
        build_board([load_run(tmp_path / "a" / "results.json"), load_run(tmp_path / "b" / "results.json")],
                    n_resamples=10)
