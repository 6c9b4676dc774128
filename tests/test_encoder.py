"""The structure-aware ESM-2 encoder (sepit/models/encoder.py), checked against plain fair-esm ESM-2."""

import argparse
import collections

import numpy as np
import pytest
import torch
from esm.pretrained import load_model_and_alphabet_core

import sepit.models.encoder as encoder
from sepit.data.protein import make_protein
from sepit.models.encoder import ESM2_SIZES, StructureAwareESM, esm2_from_checkpoint, esm2_tiny
from sepit.tiny.builders import save_esm2_checkpoint

LAYERS = 3


def _coords(length: int, seed: int) -> np.ndarray:
    """A C-alpha trace with ~3.8 Å steps."""
    steps = np.random.default_rng(seed).normal(size=(length, 3))
    steps *= 3.8 / np.linalg.norm(steps, axis=1, keepdims=True)
    return np.cumsum(steps, axis=0).astype(np.float32)


def _model(**options) -> StructureAwareESM:
    torch.manual_seed(0)
    model = StructureAwareESM(esm2_tiny(num_layers=LAYERS), num_kernels=16, **options)
    return model.eval()


def _batch():
    holey = _coords(9, 3)
    holey[[0, 4, 5]] = np.nan
    return [
        make_protein("a", "MKTAYIAKQR", _coords(10, 1)),
        make_protein("b", "GSHMLE"),  # sequence only
        make_protein("c", "ACDEFGHIK", holey),
    ]


def _run(model, proteins, **options):
    return model(**model.tokenize(proteins), **options)


def _residues(out, proteins, key="features"):
    """Non-padded positions (BOS, residues, EOS) of each protein."""
    return [out[key][i, : len(p) + 2] for i, p in enumerate(proteins)]


def test_sequence_only_reproduces_fair_esm_on_a_padded_batch():
    model, proteins = _model(sequence_only=True), _batch()
    batch = model.tokenize(proteins)
    assert batch["tokens"].eq(model.alphabet.padding_idx).any()
    with torch.no_grad():
        ours = model(**batch)
        ref = model.esm(batch["tokens"], repr_layers=[LAYERS - 1, LAYERS])["representations"]
    for i, protein in enumerate(proteins):
        n = len(protein) + 2
        assert torch.allclose(ours["features"][i, :n], ref[LAYERS - 1][i, :n], atol=1e-5, rtol=0)
        assert torch.allclose(ours["final"][i, :n], ref[LAYERS][i, :n], atol=1e-5, rtol=0)


def _reference_features(model, batch, structure=None):
    """ESM-2's pre-norm layers written out from fair-esm's own parameters, the structure bias added to every
    layer's attention scores and the encoding to the input: the second-to-last layer's output. `structure`:
    (bias, encoding) to use instead of the module's."""
    esm, T = model.esm, batch["tokens"].shape[1]
    padding = batch["tokens"].eq(esm.padding_idx)
    observed = batch["observed"] & ~padding
    bias, encoding = structure or model.structure(batch["coords"], observed, padding)
    x = esm.embed_scale * esm.embed_tokens(batch["tokens"])
    x = x * (1 - 0.15 * 0.8)  # fair-esm's token-dropout rescaling with no <mask> in the input
    x = x + model.encoding_scale * encoding
    for layer in esm.layers[:-1]:
        attn = layer.self_attn
        H, d = attn.num_heads, attn.head_dim
        h = layer.self_attn_layer_norm(x)
        heads = lambda t: t.view(1, T, H, d).transpose(1, 2)  # noqa: E731
        q, k = attn.rot_emb(heads(attn.q_proj(h) * d ** -0.5), heads(attn.k_proj(h)))
        scores = q @ k.transpose(-1, -2) + bias
        out = scores.softmax(-1) @ heads(attn.v_proj(h))
        x = x + attn.out_proj(out.transpose(1, 2).reshape(1, T, -1))
        x = x + layer.fc2(torch.nn.functional.gelu(layer.fc1(layer.final_layer_norm(x))))
    return x


def test_structure_enters_as_the_written_out_computation_says():
    model, proteins = _model(), _batch()[:1]  # one protein with coordinates, no padding
    batch = model.tokenize(proteins)
    with torch.no_grad():
        features = model(**batch)["features"]
        reference = _reference_features(model, batch)
        model.sequence_only = True
        without = model(**batch)["features"]
    assert torch.allclose(features, reference, atol=1e-5, rtol=0)
    assert not torch.allclose(features, without, atol=1e-3)  # and the structure is what moved them


def test_missing_coordinates_equal_sequence_only_alone_and_in_a_batch():
    model = _model()
    all_nan = make_protein("n", "GSHMLE", np.full((6, 3), np.nan, dtype=np.float32))
    proteins = _batch()
    with torch.no_grad():
        alone = _run(model, [proteins[1]])["features"][0]
        batched = _residues(_run(model, proteins + [all_nan]), proteins + [all_nan])
        model.sequence_only = True
        reference = _run(model, [proteins[1]])["features"][0]
    for features in (alone, batched[1], batched[3]):
        assert torch.isfinite(features).all()
        assert torch.allclose(features, reference, atol=1e-6, rtol=0)


def _reference_structure(structure, residues, T):
    """The structure bias (1, H, T, T) and encoding (1, T, D) written out from the observed residues alone:
    residues (L, 3) tensor, NaN rows unobserved, at token positions 1..L of T. Gaussian kernels of the
    pairwise distances (paper Sec. 3.1), the bias MLP per observed pair, the projected kernel sum per observed
    residue; zero wherever a residue without coordinates is involved."""
    seen = torch.isfinite(residues).all(dim=1)
    at = seen.nonzero().flatten() + 1  # token positions of the observed residues
    xyz = residues[seen]  # NaN rows never enter the arithmetic
    distance = torch.cdist(xyz, xyz, compute_mode="donot_use_mm_for_euclid_dist")  # (n, n)
    std = structure.stds.abs() + structure.kernel_epsilon
    kernels = torch.exp(-0.5 * ((distance[..., None] - structure.means) / std) ** 2) / ((2 * torch.pi) ** 0.5 * std)
    bias = torch.zeros(1, structure.bias_mlp[-1].out_features, T, T)
    bias[0][:, at[:, None], at[None, :]] = structure.bias_mlp(kernels).permute(2, 0, 1)
    encoding = torch.zeros(1, T, structure.encoding_proj.out_features)
    encoding[0, at] = structure.encoding_proj(kernels.sum(dim=1))
    return bias, encoding


def test_unobserved_residues_give_what_the_observed_ones_alone_give():
    """A protein with residues missing coordinates (NaN), in a padded training batch: its features, the
    parameter gradients and the coordinate gradients equal those of the written-out computation over its
    observed residues alone; no NaN reaches a value or a gradient, and missing residues get gradient 0."""
    model, proteins = _model().train(), _batch()
    holey = proteins[2]  # residues 0, 4, 5 without coordinates
    batch = model.tokenize(proteins)
    assert batch["tokens"].shape[1] == len(proteins[0]) + 2 > len(holey) + 2  # protein c is padded
    batch["coords"].requires_grad_(True)
    n = len(holey) + 2
    features = model(**batch)["features"][2, :n]
    features.sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    residues = torch.from_numpy(holey.coords.copy()).requires_grad_(True)
    alone = model.tokenize([holey])
    reference = _reference_features(model, alone, _reference_structure(model.structure, residues, n))[0]
    reference.sum().backward()
    assert torch.allclose(features, reference, atol=1e-5, rtol=0)
    for name, grad in grads.items():
        assert torch.allclose(grad, model.get_parameter(name).grad, atol=1e-5, rtol=1e-4), name
    assert {"structure.means", "structure.stds", "structure.bias_mlp.0.weight", "structure.encoding_proj.weight"} \
        <= set(grads)
    coords_grad = batch["coords"].grad[2, 1:n - 1]  # (L, 3) at the residues
    missing = torch.tensor([0, 4, 5])
    assert torch.equal(coords_grad[missing], torch.zeros(3, 3))
    assert torch.allclose(coords_grad, residues.grad, atol=1e-5, rtol=1e-4)
    assert coords_grad.abs().sum(dim=1).gt(0).sum() == len(holey) - 3  # every observed residue moves the loss


def test_bias_and_features_invariant_to_rotation_and_translation():
    model, proteins = _model(), _batch()
    rotation, _ = np.linalg.qr(np.random.default_rng(7).normal(size=(3, 3)))
    moved = [make_protein(p.id, p.sequence, None if p.coords is None else p.coords @ rotation.T + [30.0, -5.0, 12.0])
             for p in proteins]
    with torch.no_grad():
        before, after = (_run(model, ps, return_attention_bias=True) for ps in (proteins, moved))
    assert before["attention_bias"].abs().max() > 0
    assert torch.allclose(before["attention_bias"], after["attention_bias"], atol=1e-5, rtol=0)
    assert torch.allclose(before["features"], after["features"], atol=1e-5, rtol=0)


def test_bias_is_zero_off_observed_residue_pairs():
    model, proteins = _model(), _batch()
    batch = model.tokenize(proteins)
    with torch.no_grad():
        bias = model(**batch, return_attention_bias=True)["attention_bias"]  # (B, H, T, T)
    assert bias.shape == (3, model.num_heads, 12, 12)
    observed = batch["observed"]
    assert not observed[:, 0].any()  # BOS
    assert [int(observed[i].sum()) for i in range(3)] == [10, 0, 6]
    off = ~(observed[:, :, None] & observed[:, None, :])
    assert bias.masked_select(off[:, None]).eq(0).all()
    assert bias[0, :, 1:11, 1:11].ne(0).all()
    for i, protein in enumerate(proteins):  # BOS and EOS rows and columns
        for position in (0, len(protein) + 1):
            assert bias[i, :, position].eq(0).all() and bias[i, :, :, position].eq(0).all()


def test_bias_is_added_in_every_layer(monkeypatch):
    model, proteins = _model(), _batch()[:1]
    masks = []
    original = encoder._layer_with_bias
    skip = collections.Counter()

    def recording(layer, x, mask):
        masks.append(mask)
        index = len(masks) - 1
        return original(layer, x, torch.zeros_like(mask) if skip[index] else mask)

    monkeypatch.setattr(encoder, "_layer_with_bias", recording)
    with torch.no_grad():
        out = _run(model, proteins, return_attention_bias=True)
        assert len(masks) == LAYERS
        assert all(torch.equal(mask, out["attention_bias"]) for mask in masks)  # no padding in this batch
        for layer in range(LAYERS):  # removing the bias from any single layer changes the output
            masks.clear()
            skip.clear()
            skip[layer] = 1
            assert (_run(model, proteins)["final"] - out["final"]).abs().max() > 1e-4


def test_drop_structure_rate_drops_all_in_training_and_nothing_in_eval():
    proteins = _batch()
    dropping, reference = _model(drop_structure_rate=1.0), _model(sequence_only=True)
    with torch.no_grad():
        evaluated = _run(dropping, proteins)["features"]
        assert (evaluated - _run(reference, proteins)["features"]).abs().max() > 1e-3
        assert torch.equal(evaluated, _run(_model(), proteins)["features"])
        dropping.train()
        reference.train()
        assert torch.allclose(_run(dropping, proteins)["features"], _run(reference, proteins)["features"],
                              atol=1e-6, rtol=0)


@pytest.mark.filterwarnings("ignore:Regression weights not found")  # fair-esm's loader, on contact weights
def test_checkpoint_round_trip_in_the_released_layout(tmp_path):
    torch.manual_seed(0)
    original = esm2_tiny(num_layers=2, embed_dim=32, attention_heads=4).eval()
    path = save_esm2_checkpoint(original, tmp_path / "esm2_t2_tiny.pt")

    loaded = esm2_from_checkpoint(path).eval()
    # Independent reference: fair-esm's own loader, given the same file's contents.
    with torch.serialization.safe_globals([argparse.Namespace]):
        reference, _ = load_model_and_alphabet_core("esm2_t2_tiny", torch.load(path, weights_only=True))
    proteins = _batch()
    tokens = StructureAwareESM(loaded).tokenize(proteins)["tokens"]
    with torch.no_grad():
        expected = original(tokens, repr_layers=[1])["representations"][1]
        for model in (loaded, reference.eval()):
            assert torch.equal(model(tokens, repr_layers=[1])["representations"][1], expected)


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "cfg": {"model": collections.OrderedDict}, "payload": np.random.default_rng(0)},
               path)
    with pytest.raises(Exception, match="[Ww]eights only"):
        esm2_from_checkpoint(path)


def test_long_protein_is_cropped_to_the_esm2_window():
    model = StructureAwareESM(esm2_tiny(num_layers=2), num_kernels=4).eval()  # small: T=1024 on CPU
    long = make_protein("long", "A" * 1100, _coords(1100, 5))
    batch = model.tokenize([long])
    assert batch["tokens"].shape == (1, 1024) and batch["observed"].sum() == 1022
    with torch.no_grad():
        features = model(**batch)["features"]
    assert features.shape == (1, 1024, model.embed_dim) and torch.isfinite(features).all()


def test_named_sizes_build_the_released_architectures():
    assert set(ESM2_SIZES) == {"esm2_t6_8M_UR50D", "esm2_t12_35M_UR50D", "esm2_t30_150M_UR50D",
                               "esm2_t33_650M_UR50D", "esm2_t36_3B_UR50D"}
    small = esm2_tiny(*ESM2_SIZES["esm2_t6_8M_UR50D"])
    assert 7.5e6 < sum(p.numel() for p in small.parameters()) < 8.5e6
    assert StructureAwareESM(small).structure.means.shape == (128,)  # K=128, paper Sec. 3.1


@pytest.mark.parametrize("masking", ["observed", "official"])
def test_kernels_only_for_proteins_with_coordinates_equal_the_full_computation(masking):
    model = _model()
    model.structure.masking = masking
    batch = model.tokenize(_batch())  # protein b has no coordinates
    coords, observed = batch["coords"], batch["observed"]
    padding = batch["tokens"].eq(model.alphabet.padding_idx)
    assert not observed[1].any() and observed[0].any()
    bias, encoding = model.structure(coords, observed, padding)  # the partial path
    pairwise = model.structure._observed if masking == "observed" else model.structure._official
    full_bias, full_encoding = pairwise(coords, observed, padding)
    assert torch.equal(bias, full_bias) and torch.equal(encoding, full_encoding)
    assert not bias[1].any() and not encoding[1].any()


def test_parameters_unused_by_features_get_no_gradient():
    for sequence_only in (False, True):
        model = _model(sequence_only=sequence_only).train()
        unused = {id(p) for p in model.parameters_unused_by_features()}
        assert (id(model.structure.means) in unused) == sequence_only
        _run(model, _batch(), return_final=False)["features"].sum().backward()
        for name, p in model.named_parameters():
            assert (p.grad is None) == (id(p) in unused), name


def test_official_bias_masking_equals_the_plain_full_computation():
    """The official masking, written out on every (query, key) pair of the padded length (no shortcut for the
    padding rows), as the official code computes it: coordinates (0, 0, 0) mean none."""
    torch.manual_seed(0)
    structure = encoder.StructureBias(num_kernels=8, num_heads=2, embed_dim=6, masking="official")
    B, T = 3, 40
    padding = torch.ones(B, T, dtype=torch.bool)
    for i, length in enumerate((38, 12, 25)):  # residues + BOS/EOS; one protein fills the whole length
        padding[i, :length] = False
    coords = torch.randn(B, T, 3) * 5
    observed = ~padding.clone()
    observed[:, 0] = False  # BOS
    for i, length in enumerate((38, 12, 25)):
        observed[i, length - 1] = False  # EOS
    observed[0, [3, 4, 20]] = False  # gaps
    observed[1] = False  # no structure at all
    bias, encoding = structure(coords, observed, padding)

    points = coords.masked_fill(~observed[..., None], 0.0)
    kernels = structure.kernels(points, points)  # (B, T, T, K)
    want = structure.bias_mlp(kernels).masked_fill(~observed[:, None, :, None], 0.0).permute(0, 3, 1, 2)
    want[:, :, [0, T - 1], :] = 0.0
    want[:, :, :, [0, T - 1]] = 0.0
    summed = (kernels * (~padding)[:, None, :, None]).sum(dim=2)
    want_encoding = structure.encoding_proj(summed).masked_fill(~observed[..., None], 0.0)
    assert torch.allclose(bias, want, atol=1e-6) and torch.allclose(encoding, want_encoding, atol=1e-5)
    assert not bias[1].any() and bias[2, :, 30].abs().sum() > 0  # padding rows see the residues


@pytest.mark.parametrize("masking", ["observed", "official"])
def test_a_batch_mixing_proteins_with_and_without_coordinates_encodes_each_as_alone(masking, monkeypatch):
    """The two groups run separately (no (B, H, T, T) bias for the proteins without coordinates) and give what
    the whole batch gives in one pass (which returning the bias forces); with our masking, what each protein
    gives alone (the official masking depends on the padded length); gradients reach the structure module."""
    model = _model(bias_masking=masking)
    proteins = _batch()
    encoded = []
    monkeypatch.setattr(model, "_encode", lambda *a, _f=model._encode: encoded.append(len(a[0])) or _f(*a))
    with torch.no_grad():
        out = _run(model, proteins)
        assert sorted(encoded) == [1, 2]  # b apart from a and c
        whole = _run(model, proteins, return_attention_bias=True)
        assert encoded[2:] == [3]
        for key in ("features", "final", "padding_mask"):
            assert torch.allclose(out[key].float(), whole[key].float(), atol=1e-5, rtol=0)
        for protein, row in zip(proteins, _residues(out, proteins)):
            (alone,) = _residues(_run(model, [protein]), [protein])
            assert masking == "official" or torch.allclose(row, alone, atol=1e-5, rtol=0)
    model.train()
    _run(model, proteins)["features"].sum().backward()
    assert model.structure.bias_mlp[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("masking", ["observed", "official"])
def test_padded_to_a_fixed_length_only_the_proteins_positions_are_keys(masking, monkeypatch):
    """With `pad_to` (the official layout's fixed length) every position, padding included, is a query, but the
    keys stop after the longest protein: every output equals attending to all keys. With our masking the
    structure kernels cover only the proteins' positions too: the bias is the unpadded batch's, zeros around."""
    model, proteins = _model(bias_masking=masking, window=38, pad_to=40), _batch()
    shapes = []
    sdpa = encoder.F.scaled_dot_product_attention
    monkeypatch.setattr(encoder.F, "scaled_dot_product_attention", lambda q, k, v, **kw:
                        shapes.append((q.shape[2], k.shape[2], v.shape[2])) or sdpa(q, k, v, **kw))
    kernels = []
    monkeypatch.setattr(model.structure, "kernels", lambda q, k, _f=model.structure.kernels:
                        kernels.append((q.shape[1], k.shape[1])) or _f(q, k))
    with torch.no_grad():
        out = _run(model, proteins, return_attention_bias=True)
        assert set(shapes) == {(40, 12, 12)}  # 10 residues, BOS and EOS
        # `_official` computes one row that stands for every padding row.
        assert kernels == [(12, 12) if masking == "observed" else (13, 12)]
        with monkeypatch.context() as patch:
            patch.setattr(encoder, "_up_to_the_last_key", lambda mask, padding_mask: mask)
            every_key = _run(model, proteins, return_attention_bias=True)
        assert shapes[-1] == (40, 40, 40)
        model.pad_to = None
        unpadded = _run(model, proteins, return_attention_bias=True)
    assert out["features"].shape[:2] == (3, 40)
    for key in ("features", "final", "attention_bias"):
        assert torch.allclose(out[key], every_key[key], atol=1e-5, rtol=0)
    if masking == "observed":  # the official masking gives padding rows a bias (and depends on the length)
        bias = out["attention_bias"]
        assert torch.allclose(bias[:, :, :12, :12], unpadded["attention_bias"], atol=1e-6, rtol=0)
        assert not bias[:, :, 12:].any() and not bias[:, :, :, 12:].any()
        for key in ("features", "final"):
            for row, alone in zip(_residues(out, proteins, key), _residues(unpadded, proteins, key)):
                assert torch.allclose(row, alone, atol=1e-5, rtol=0)


def test_tokens_by_table_lookup_equal_fair_esms_batch_converter():
    model = _model()
    sequences = ["MKTAYIAKQR", "GSHMLE", "XBZUO", "A", "ACDEFGHIKLMNPQRSTVWY" * 3]
    expected = model._batch_converter([(str(i), s) for i, s in enumerate(sequences)])[2]
    assert torch.equal(model._tokens(sequences), expected)
    masked = model._tokens(["MK<mask>V"])  # not one-letter tokens only: fair-esm itself reads it
    assert torch.equal(masked, model._batch_converter([("0", "MK<mask>V")])[2])
    assert masked[0, 3] == model.alphabet.mask_idx and masked.shape == (1, 6)
