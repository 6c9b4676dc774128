"""The data layer: proteins, instruction samples, and readers for the formats we load. It knows no model."""

from sepit.data.errors import DataError
from sepit.data.protein import ESM2_WINDOW, Protein, crop_to_window, make_protein
from sepit.data.sample import PROTEIN_PLACEHOLDER, CaptionPair, InstructionSample, make_sample

__all__ = ["DataError", "ESM2_WINDOW", "Protein", "crop_to_window", "make_protein", "PROTEIN_PLACEHOLDER",
           "CaptionPair", "InstructionSample", "make_sample"]
