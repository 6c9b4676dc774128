import os
from pathlib import Path

# No hub, ever: a stray from_pretrained("org/name") fails in seconds instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# `make test` builds the offline NLTK data here (see Makefile, sepit/nltk_data.py).
os.environ.setdefault("NLTK_DATA", str(Path(__file__).resolve().parents[1] / ".cache" / "nltk_data"))


import pytest


@pytest.fixture(autouse=True, scope="session")
def quick_pretraining():
    """The pretrained tiny parts (`pretrained:esm2`, `pretrained:llm`) take the demo a minute each to build;
    tests build them with the same recipe cut to a few steps (tests/test_pretrained.py checks the real path)."""
    from sepit.tiny import pretrained

    original = pretrained.recipe
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pretrained, "recipe", lambda name: {**original(name), "steps": 4})
        yield
