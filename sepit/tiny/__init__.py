"""The tiny parts of tests and the CPU demo, built on this machine: random models (`builders`), the same parts
pretrained from a committed recipe (`pretrained`), and what both learn from (`corpus`). Production code reaches
them only through the `tiny:` and `pretrained:` names of `sepit.model_paths`."""
