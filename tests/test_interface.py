import pytest

from sepit.data import make_protein, make_sample
from sepit.models.interface import GenerationConfig, ModelCard, ProteinLLM


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
    assert Echo().generate([sample], GenerationConfig()) == ["Is <protein> soluble?"]


def test_generation_config_hash_changes_with_any_setting():
    assert GenerationConfig().hash() == GenerationConfig().hash()
    assert GenerationConfig().hash() != GenerationConfig(max_new_tokens=128).hash()
    assert len(GenerationConfig().hash()) == 16
