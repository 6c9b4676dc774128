"""Training SEPIT: the stage LightningModules, their data, and the `sepit fit|validate|test` CLI."""
