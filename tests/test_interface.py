import hashlib
import json

import pytest

from sepit.data import make_protein, make_sample
from sepit.interface import GenerationSettings, ModelCard, ProteinLLM


class Echo(ProteinLLM):
    def generate(self, samples, config):
        return [s.instruction for s in samples]

    def describe(self):
        return ModelCard("echo", "text-only", 0, 0, "echo-1")


class Scorer(Echo):
    def loglikelihood(self, samples):
        return [[0.0] * len(s.choices) for s in samples]


def test_loglikelihood_is_optional_and_advertised():
    sample = make_sample("s", "t", make_protein("p", "MKV"), "Is <protein> soluble?", "yes", ["yes", "no"])
    assert not Echo().supports_loglikelihood
    with pytest.raises(NotImplementedError, match="Echo cannot score choices by likelihood"):
        Echo().loglikelihood([sample])
    assert Scorer().supports_loglikelihood and Scorer().loglikelihood([sample]) == [[0.0, 0.0]]
    assert Echo().generate([sample], GenerationSettings()) == ["Is <protein> soluble?"]


def test_generation_config_hash_changes_with_any_setting():
    assert GenerationSettings().hash() == GenerationSettings().hash()
    assert GenerationSettings().hash() != GenerationSettings(max_new_tokens=128).hash()
    # By hand: the SHA-256 of the settings but logprobs (it changes no answer), as sorted JSON, first 16 hex digits.
    settings = {"max_new_tokens": 256, "do_sample": False, "temperature": 1.0, "top_p": 1.0, "seed": 0}
    expected = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    assert GenerationSettings().hash() == GenerationSettings(logprobs=True).hash() == expected
    assert GenerationSettings(batch_size=4).hash() == expected  # rows decoded together change no greedy answer


def test_answer_pairs_each_answer_with_its_row_fields_and_the_old_names_still_work():
    sample = make_sample("s", "t", make_protein("p", "MKV"), "Is <protein> soluble?", "yes", ["yes", "no"])
    assert Echo().answer([sample], GenerationSettings()) == [("Is <protein> soluble?", {})]

    class OldPlugin(Echo):  # written against the interface before `answer`
        def details(self, samples):
            return [{"note": s.id} for s in samples]

    with pytest.warns(DeprecationWarning, match="override answer"):
        assert OldPlugin().answer([sample], GenerationSettings()) == [("Is <protein> soluble?", {"note": "s"})]
    import sepit.interface

    with pytest.warns(DeprecationWarning, match="GenerationSettings"):
        assert sepit.interface.GenerationConfig is GenerationSettings
