import os
from pathlib import Path

# No hub, ever: a stray from_pretrained("org/name") fails in seconds instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# `make test` builds the offline NLTK data here (see Makefile, sepit/nltk_data.py).
os.environ.setdefault("NLTK_DATA", str(Path(__file__).resolve().parents[1] / ".cache" / "nltk_data"))
