import random
import time

import pytest

from sepit_baselines.majority import MajorityModel, QuestionMajorityModel, most_frequent
from sepit_baselines.retrieval import RetrievalModel
from sepit.data.protein import STANDARD_RESIDUES, make_protein
from sepit.data.sample import make_sample
from sepit.identity import sequence_identity
from sepit.interface import GenerationSettings
from sepit.tasks import Task, get_task

CONFIG = GenerationSettings()


def random_sequence(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(STANDARD_RESIDUES) for _ in range(length))


def homolog(sequence: str, rng: random.Random, every: int = 5) -> str:
    """Every `every`-th residue substituted (80 % identical for every=5)."""
    letters = list(sequence)
    for i in range(2, len(letters) - 2, every):
        letters[i] = rng.choice([c for c in STANDARD_RESIDUES if c != letters[i]])
    return "".join(letters)


def make_task(name: str, train: list[tuple], test: list[tuple], closed: bool = False) -> Task:
    """Rows are (sample id, protein id, sequence, reference, metadata)."""
    choices = ("yes", "no") if closed else None

    def samples(rows):
        return [make_sample(sid, name, make_protein(pid, seq), "Is it <protein>?", ref, choices, meta)
                for sid, pid, seq, ref, meta in rows]
    return Task(name=name, version="1", kind="closed" if closed else "open", description="",
                answer_format="yes_no" if closed else "free_text",
                build=lambda: {"train": samples(train), "test": samples(test)})


@pytest.fixture(scope="module")
def proteins():
    rng = random.Random(7)
    return {name: random_sequence(rng, 120) for name in "ABCD"}


def test_retrieval_copies_the_most_identical_neighbours_answer(proteins):
    rng = random.Random(8)
    train = [("t1", "A", proteins["A"], "answer A", {}), ("t2", "B", proteins["B"], "answer B", {}),
             ("t3", "B", proteins["B"], "second answer B", {}), ("t4", "C", proteins["C"], "answer C", {})]
    query = homolog(proteins["B"], rng)
    test = [("q1", "Q", query, "unused", {}), ("q2", "R", proteins["C"], "unused", {})]
    task = make_task("tiny_open", train, test)
    model = RetrievalModel()
    model.prepare([task])
    samples = task.samples("test")
    assert model.generate(samples, CONFIG) == ["answer B", "answer C"]  # first sample of protein B
    details = [extra for _, extra in model.answer(samples, CONFIG)]
    assert details[0] == {"neighbour": "t2", "neighbour_identity": pytest.approx(sequence_identity(query,
                                                                                                     proteins["B"]))}
    assert 75.0 < details[0]["neighbour_identity"] < 85.0
    assert details[1] == {"neighbour": "t4", "neighbour_identity": 100.0}


def test_retrieval_looks_only_among_samples_with_the_same_metadata(proteins):
    rng = random.Random(9)
    train = [("t1", "A", proteins["A"], "yes", {"go_term": "GO:1"}),
             ("t2", "B", proteins["B"], "no", {"go_term": "GO:2"}),
             ("t3", "C", proteins["C"], "yes", {"go_term": "GO:2"})]
    query = homolog(proteins["A"], rng)
    test = [("q1", "Q", query, "no", {"go_term": "GO:2"}),  # A is nearest but answers about another term
            ("q2", "Q", query, "no", {"go_term": "GO:1"}),
            ("q3", "Q", query, "no", {"go_term": "GO:3"})]  # no training sample asks this: all are comparable
    task = make_task("tiny_closed", train, test, closed=True)
    model = RetrievalModel()
    model.prepare([task])
    samples = task.samples("test")
    answers = model.generate(samples, CONFIG)
    details = [extra for _, extra in model.answer(samples, CONFIG)]
    neighbours = [d["neighbour"] for d in details]
    assert neighbours[1:] == ["t1", "t1"] and answers[1:] == ["yes", "yes"]
    assert neighbours[0] in {"t2", "t3"} and answers[0] == {"t2": "no", "t3": "yes"}[neighbours[0]]
    assert details[0]["neighbour_identity"] < 30.0


def test_retrieval_shares_one_search_across_tasks_and_requires_prepare(proteins):
    first = make_task("one", [("a", "A", proteins["A"], "x", {})], [("q", "Q", proteins["A"], "x", {})])
    second = make_task("two", [("b", "B", proteins["B"], "y", {})], [("q", "Q", proteins["A"], "y", {})])
    clash = make_task("three", [("c", "A", proteins["C"], "z", {})], [("q", "Q", proteins["C"], "z", {})])
    model = RetrievalModel()
    model.prepare([first, second, clash])
    assert model._tasks["one"].search is model._tasks["two"].search
    assert model._tasks["three"].search is not model._tasks["one"].search  # protein id A means another protein
    assert model.generate(second.samples("test") + clash.samples("test"), CONFIG) == ["y", "z"]
    with pytest.raises(RuntimeError, match="'missing'.*prepare"):
        model.generate([make_sample("s", "missing", make_protein("P", "MKT"), "<protein>?", "r")], CONFIG)


def test_retrieval_describe():
    card = RetrievalModel().describe()
    assert (card.name, card.modality, card.params_total, card.params_active) == ("retrieval", "retrieval", 0, 0)
    assert len(card.fingerprint) == 16 and int(card.fingerprint, 16) >= 0
    assert card.fingerprint == RetrievalModel().describe().fingerprint
    assert card.fingerprint != RetrievalModel(candidates=5).describe().fingerprint
    with pytest.raises(ValueError, match="unknown identity backend"):
        RetrievalModel(backend="blast")


def test_majority_answers_the_most_frequent_training_reference(proteins):
    train = [(f"t{i}", "A", proteins["A"], ref, {}) for i, ref in enumerate(["no", "yes", "no", "yes", "no"])]
    task = make_task("votes", train, [("q1", "B", proteins["B"], "yes", {}), ("q2", "C", proteins["C"], "no", {})],
                     closed=True)
    model = MajorityModel()
    model.prepare([task])
    assert model.generate(task.samples("test"), CONFIG) == ["no", "no"]
    card = model.describe()
    assert (card.name, card.modality, card.params_total, card.params_active) == ("majority", "text-only", 0, 0)
    assert len(card.fingerprint) == 16


def test_majority_breaks_ties_towards_the_smallest_text_and_requires_prepare(proteins):
    assert most_frequent(["b", "a", "c", "b", "a"]) == "a"
    assert most_frequent(["zeta", "Alpha", "alpha"]) == "Alpha"
    sample = make_sample("s", "unprepared", make_protein("P", "MKT"), "<protein>?", "r")
    with pytest.raises(RuntimeError, match="'unprepared'.*prepare"):
        MajorityModel().generate([sample], CONFIG)


def test_question_majority_answers_the_same_question_as_training_did(proteins):
    """Per instruction, the most frequent training answer; an instruction no training sample asks gets the
    task's majority. The protein is never read: the same question about any protein gets the same answer."""
    def sample(sid, protein, instruction, reference):
        return make_sample(sid, "terms", make_protein(protein, proteins[protein]), instruction, reference,
                           ("yes", "no"))

    nucleus, membrane, unseen = ("Is <protein> in the nucleus?", "Is <protein> in the membrane?",
                                 "Is <protein> in the vacuole?")
    train = [sample("t1", "A", nucleus, "yes"), sample("t2", "B", nucleus, "yes"), sample("t3", "C", nucleus, "no"),
             sample("t4", "A", membrane, "no"), sample("t5", "B", membrane, "no"), sample("t6", "C", membrane, "no")]
    test = [sample("q1", "C", nucleus, "no"), sample("q2", "A", membrane, "no"), sample("q3", "B", unseen, "yes"),
            sample("q4", "B", nucleus, "yes")]
    task = Task(name="terms", version="1", kind="closed", description="", answer_format="yes_no",
                build=lambda: {"train": train, "test": test})
    model = QuestionMajorityModel()
    model.prepare([task])
    assert model.generate(test, CONFIG) == ["yes", "no", "no", "yes"]  # "no" is the task's majority (4 of 6)
    majority = MajorityModel()
    majority.prepare([task])
    assert majority.generate(test, CONFIG) == ["no"] * 4
    card = model.describe()
    assert (card.name, card.modality, card.params_total, card.params_active) == ("question-majority", "text-only", 0, 0)
    assert card.fingerprint != majority.describe().fingerprint
    with pytest.raises(RuntimeError, match="'terms'.*prepare"):
        QuestionMajorityModel().generate(test, CONFIG)
    retrained = Task(name="terms", version="2", kind="closed", description="", answer_format="yes_no",
                     build=lambda: {"train": train[3:], "test": test})
    model.prepare([retrained])  # a task read again replaces what was read before
    assert model.generate(test, CONFIG) == ["no", "no", "no", "no"]


def accuracy(answers, samples) -> float:
    return sum(a == s.reference for a, s in zip(answers, samples)) / len(samples)


def test_retrieval_beats_majority_on_sp14_membrane():
    task = get_task("sp14_membrane")
    test = task.samples("test")
    scores = {}
    for model in (RetrievalModel(), MajorityModel()):
        start = time.perf_counter()
        model.prepare([task])
        scores[model.describe().name] = accuracy(model.generate(test, CONFIG), test)
        print(f"{model.describe().name}: accuracy {scores[model.describe().name]:.3f} "
              f"in {time.perf_counter() - start:.1f} s")
    assert scores["retrieval"] > scores["majority"]
