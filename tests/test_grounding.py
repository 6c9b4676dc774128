"""The grounding (sepit/grounding): text -> GO terms, EC numbers and DeepLoc locations, and its data files."""

import gzip
import json
import shutil

import pytest

from sepit.data.errors import DataError
from sepit.grounding import enzyme
from sepit.grounding.enzyme import ec_prefix, parse_ec
from sepit.grounding.grounder import Grounder, default_grounder
from sepit.grounding.ontology import GO_FILE, ROOTS, GeneOntology, default_ontology
from sepit.grounding.phrases import PhraseMatcher, tokens


def named(text, kind):
    return set(default_grounder().ground(text)[kind])


def test_tokens_normalise_case_hyphens_and_space():
    assert tokens("ATP-binding") == tokens("atp  binding") == tokens("ATP\u2013Binding") == ("atp", "binding")
    assert tokens("ATP\u2212binding") == ("atp", "binding")  # the minus sign
    assert tokens("NAD(+)") == ("nad", "(", "+", ")")
    assert tokens("5\u2019-nucleotidase") == tokens("5\u2032-nucleotidase") == tokens("5'-nucleotidase")
    assert tokens("\u03b1-amylase") == tokens("alpha-amylase") and tokens("\u03c4") == ("tau",)


def test_unicode_spellings_name_the_specific_term():
    assert named("5\u2019-nucleotidase activity", "go_mf") == {"GO:0008253"}
    assert named("\u03b1-amylase activity", "go_mf") == {"GO:0004556"}


def test_matcher_takes_the_longest_phrase_on_word_boundaries():
    matcher = PhraseMatcher()
    for phrase, value in (("kinase", 1), ("kinase activity", 2), ("protein kinase activity", 3), ("bind", 4)):
        matcher.add(phrase, value)
    found = matcher.find("A protein kinase activity, kinase and binding.")
    assert [(phrase, values) for phrase, values in found] == [("protein kinase activity", {3}), ("kinase", {1})]


def test_ontology_file_matches_the_go_release():
    go = default_ontology()
    assert go.release == "2022-07-01"
    assert sum(not t.obsolete for t in go.terms.values()) == 43_558  # GO.db's 43,559 rows less its "all" root
    assert go.terms["GO:0005524"].name == "ATP binding" and go.namespace("GO:0005524") == "mf"
    assert go.normalise("GO:0007067") == "GO:0000278"  # "mitosis", merged into "mitotic cell cycle"
    assert go.normalise("GO:9999999") is None
    closure = go.closure("GO:0005743")  # mitochondrial inner membrane
    assert {"GO:0005743", "GO:0005739", "GO:0005737"} <= closure  # part_of mitochondrion, part_of cytoplasm
    assert not closure & ROOTS


def test_missing_or_corrupt_ontology_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(DataError, match="go.json.gz: the Gene Ontology file of the grounding is missing"):
        GeneOntology.load(tmp_path / "go.json.gz")
    truncated = tmp_path / "truncated.json.gz"
    truncated.write_bytes(GO_FILE.read_bytes()[:5000])
    with pytest.raises(DataError, match="truncated.json.gz: the Gene Ontology file is corrupt.*build_go"):
        GeneOntology.load(truncated)
    no_terms = tmp_path / "empty.json.gz"
    no_terms.write_bytes(gzip.compress(json.dumps({"release": "x", "alt_ids": {}, "obsolete": {}}).encode()))
    with pytest.raises(DataError, match="empty.json.gz: the Gene Ontology file is corrupt"):
        GeneOntology.load(no_terms)
    dangling = tmp_path / "dangling.json.gz"
    dangling.write_bytes(gzip.compress(json.dumps({"release": "x", "alt_ids": {}, "obsolete": {}, "terms": {
        "GO:0000001": ["mf", "a", ["GO:0000002"], []]}}).encode()))
    with pytest.raises(DataError, match="dangling.json.gz: .*names a parent GO:0000002 it does not hold"):
        GeneOntology.load(dangling)


def test_ec_numbers_written_out():
    text = "Catalytic activity (EC 3.1.3.16): ... also 3.1.-.-, EC 2.7, EC:2.7.11.n1; not 1.2.3 nor v1.2.3.4.5"
    assert parse_ec(text) == ("3.1.3.16", "3.1.-.-", "2.7.-.-", "2.7.11.n1")
    assert parse_ec("E.C. 3.1 and EC3.1.3.16") == ("3.1.-.-", "3.1.3.16")
    for not_an_enzyme in ("IP 192.168.0.1", "release 2022.07.01.1", "pH 7.5", "\uff13.1.3.16"):
        assert parse_ec(not_an_enzyme) == (), not_an_enzyme
    assert ec_prefix("3.1.3.16", 3) == "3.1.3" and ec_prefix("3.1.-.-", 3) is None


def test_enzyme_catalogue_is_the_unmodified_release_and_maps_reactions():
    catalogue = enzyme.reactions()
    assert len(catalogue) == 3541  # of 3,870 entries, the ones with a reaction (CA) line
    assert catalogue["2.7.4.3"] == ("ATP + AMP = ADP + ADP.",)
    assert named("It catalyzes ATP + AMP = ADP + ADP", "ec") == {"2.7.4.3"}
    # a reaction of several entries means the partial number they share
    sharing = sorted(ec for ec, texts in catalogue.items() if "ATP + H(2)O = ADP + phosphate." in texts)
    assert len(sharing) > 5 and {ec[:3] for ec in sharing} == {"3.6"}
    assert named("ATP + H(2)O = ADP + phosphate", "ec") == {"3.6.-.-"}
    # the reaction's chemicals are not read as GO terms
    assert not any(default_grounder().ground("ATP + AMP = ADP + ADP.")[k] for k in ("go_mf", "go_bp", "go_cc"))


def test_corrupt_enzyme_catalogue_names_the_line(tmp_path):
    bad = tmp_path / "enzyme.dat"
    bad.write_text("ID   1.1.1.1\nCA   A = B.\n//\nID   not-an-ec\n", encoding="latin-1")
    with pytest.raises(DataError, match=r"enzyme.dat, line 4: 'not-an-ec' is not an EC number"):
        enzyme.reactions.__wrapped__(bad)
    with pytest.raises(DataError, match="missing"):
        enzyme.reactions.__wrapped__(tmp_path / "absent.dat")


def test_go_terms_by_name_and_multiword_synonym():
    assert named("Known roles: nucleotide binding; adenylate kinase activity; ATP-binding.", "go_mf") == {
        "GO:0000166", "GO:0004017", "GO:0005524"}
    assert named("It takes part in protein synthesis.", "go_bp") == {"GO:0006412"}  # a synonym of translation
    # single-word synonyms are left out: "AS" (asparagine synthase) would match the word "as"
    assert named("as well as synthesis and regulation", "go_mf") | named("synthesis and regulation", "go_bp") == set()
    assert Grounder(synonyms="all").ground("as well")["go_mf"] == {"GO:0004066"}


def test_roots_are_never_named_and_obsolete_terms_only_by_longer_names():
    found = default_grounder().ground("Its Gene Ontology cellular component is nucleus; molecular function.")
    assert found["go_cc"] == {"GO:0005634"} and not found["go_mf"]
    assert named("an oxidation-reduction process", "go_bp") == {"GO:0055114"}  # obsolete since 2014
    assert default_ontology().terms["GO:0003675"].name == "protein"  # obsolete, one word: never matched
    assert not any(default_grounder().ground("This protein is a cell protein.").values())


def test_a_name_wins_over_another_terms_synonym():
    go = default_ontology()
    assert "mRNA cap binding" in go.terms["GO:0000339"].synonyms  # RNA cap binding's synonym, another's name
    assert go.terms["GO:0098808"].name == "mRNA cap binding"
    assert named("mRNA cap binding", "go_mf") == {"GO:0098808"}


def test_locations_are_the_most_specific_deeploc_class():
    found = default_grounder().ground("Found in the mitochondrial inner membrane, the nucleus and the cell "
                                      "membrane; it is secreted.")
    assert found["location"] == {"Mitochondrion", "Nucleus", "Cell.membrane", "Extracellular"}
    assert named("in the cytosol", "location") == {"Cytoplasm"}
    assert named("an extracellular protein", "location") == {"Extracellular"}
    assert named("The cell. Membrane proteins", "location") == set()  # no label across a sentence break


def test_annotations_are_normalised_and_checked():
    grounder = default_grounder()
    found = grounder.from_annotations({"go": ["GO:0007067", "GO:0005739", "GO:0003674"],
                                       "ec": ["3.1.3.16", "EC 2.7.-.-"], "location": ["Nucleus"]}, "here")
    assert found["go_bp"] == {"GO:0000278"} and found["go_cc"] == {"GO:0005739"}
    assert not found["go_mf"]  # molecular_function, the root, names nothing
    assert found["ec"] == {"3.1.3.16", "2.7.-.-"}
    assert found["location"] == {"Nucleus", "Mitochondrion"}  # the label, and the location of the component
    assert found["location_label"] == {"Nucleus"}  # what an answer must name
    derived = grounder.from_annotations({"go": ["GO:0005739"]}, "here")
    assert derived["location_label"] == derived["location"] == {"Mitochondrion"}
    for bad, message in (({"go": ["GO:9999999"]}, "not a GO id"), ({"ec": ["three"]}, "not an EC number"),
                         ({"ec": ["192.168.0.1"]}, "not an EC number"),
                         ({"location": ["Moon"]}, "not a DeepLoc location"), ({"gene": []}, "unknown entity kinds"),
                         ({"go": "GO:0005524"}, "must be a list of strings"), ({"ec": [3.1]}, "list of strings"),
                         (["GO:0005524"], "must be an object")):
        with pytest.raises(DataError, match=f"sample 7: .*{message}"):
            grounder.from_annotations(bad, "sample 7")


def test_rebuild_script_reproduces_the_shipped_file(tmp_path):
    """The committed file is what build_go writes from GO.db (checked on a tiny GO.sqlite of the same schema)."""
    import sqlite3

    from sepit.grounding import build_go

    db = sqlite3.connect(tmp_path / "GO.sqlite")
    db.executescript("""
        CREATE TABLE metadata (name, value);
        INSERT INTO metadata VALUES ('GOSOURCENAME', 'Gene Ontology'), ('GOSOURCEDATE', '2022-07-01');
        CREATE TABLE go_term (_id, go_id, term, ontology, definition);
        INSERT INTO go_term VALUES (1, 'all', 'all', 'universal', NULL), (2, 'GO:0003674', 'molecular_function', 'MF', ''),
            (3, 'GO:0005488', 'binding', 'MF', ''), (4, 'GO:0005524', 'ATP binding', 'MF', '');
        CREATE TABLE go_synonym (_id, synonym, secondary, like_go_id);
        INSERT INTO go_synonym VALUES (4, 'ATP-binding', NULL, 0), (4, 'GO:0000001', 'GO:0000001', 1);
        CREATE TABLE go_obsolete (go_id, term, ontology, definition);
        INSERT INTO go_obsolete VALUES ('GO:0003675', 'obsolete protein', 'MF', '');
        CREATE TABLE go_mf_parents (_id, _parent_id, relationship_type);
        INSERT INTO go_mf_parents VALUES (2, 1, 'isa'), (3, 2, 'isa'), (4, 3, 'isa'), (4, 2, 'regulates');
        CREATE TABLE go_bp_parents (_id, _parent_id, relationship_type);
        CREATE TABLE go_cc_parents (_id, _parent_id, relationship_type);
    """)
    db.commit()
    out = tmp_path / "go.json.gz"
    build_go.main([str(tmp_path / "GO.sqlite"), "--output", str(out)])
    go = GeneOntology.load(out)
    assert go.terms["GO:0005524"].parents == ("GO:0005488",) and go.terms["GO:0003674"].parents == ()
    assert go.terms["GO:0005524"].synonyms == ("ATP-binding",) and go.normalise("GO:0000001") == "GO:0005524"
    assert go.terms["GO:0003675"].obsolete and go.terms["GO:0003675"].name == "protein"
    first = out.read_bytes()
    build_go.main([str(tmp_path / "GO.sqlite"), "--output", str(out)])
    assert out.read_bytes() == first  # deterministic
    shutil.rmtree(tmp_path)


def test_a_phrase_added_after_its_first_word_was_matched_still_counts():
    matcher = PhraseMatcher()
    matcher.add("kinase activity", 1)
    assert matcher.find("kinase activity") == [("kinase activity", {1})]  # builds the trie below "kinase"
    matcher.add("kinase", 2)
    matcher.replace("kinase activity", [3])
    assert matcher.find("a kinase, kinase activity") == [("kinase", {2}), ("kinase activity", {3})]
