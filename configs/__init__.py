"""The shipped configs, installed as `sepit_configs` (one copy, this folder): `sepit fit --config NAME` finds
`sepit/tiny/stage1` here, and `sepit pretrain` its recipe, from any working directory (`sepit.configs`)."""
