"""Models behind the common interface (`ProteinLLM`), and the SEPIT method."""
