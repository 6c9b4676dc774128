"""Grounding: the ontology entries an answer names (GO terms, EC numbers, DeepLoc locations), read from text or
given as annotations; the grounded metrics (sepit/metrics/entities.py) compare them. Torch-free.

    phrases.py   leftmost-longest phrase matching over normalised tokens
    ontology.py  the Gene Ontology file: names, synonyms, secondary ids, true-path closures
    enzyme.py    EC numbers in text, and the ENZYME 2001 catalogue's reaction texts
    grounder.py  text or annotations -> entities by kind
    build_go.py  rebuilds data/go.json.gz from Bioconductor's GO.db
"""
