"""Trained SEPIT checkpoints: the stage-checkpoint format `sepit fit` writes (`stage`), the model behind the
common interface that serves one (`model`), and the converter from the official release (`official`,
`convert`, `llama_tokenizer`)."""
