"""The configs shipped with the package (the repository's `configs/`, installed as `sepit_configs`), found by name
from any working directory, so a non-editable install trains and pretrains like a clone:

    sepit fit --config sepit/tiny/stage1                  a shipped config by name
    sepit fit --config configs/sepit/tiny/stage1.yaml     a path; the shipped copy where no such file is here
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from sepit.data.errors import DataError

PREFIX = "configs/"


def shipped_root() -> Path:
    return Path(str(files("sepit_configs")))


def shipped_names() -> list[str]:
    root = shipped_root()
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def resolve_config(spec: str) -> Path | str:
    """A config file: `spec` itself where it exists, else the shipped config it names (with or without
    `configs/` and `.yaml`). An unknown name lists the shipped ones; YAML text (`--config 'trainer: {...}'`, which
    LightningCLI takes too) is passed on as it is."""
    if Path(spec).is_file():
        return Path(spec)
    if ":" in spec or "\n" in spec or spec.lstrip().startswith("{"):
        return spec
    name = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
    name = name[:-len(".yaml")] if name.endswith(".yaml") else name
    path = shipped_root() / f"{name}.yaml"
    if ".." in Path(name).parts or not path.is_file():
        raise DataError(spec, "no such config file, and no shipped config of that name",
                        f"Give a YAML path or one of: {', '.join(shipped_names())}.")
    return path


def rewrite_config_arguments(argv: list[str]) -> list[str]:
    """`--config NAME` / `--config=NAME` arguments with NAME resolved by `resolve_config`."""
    out, expecting = [], False
    for arg in argv:
        if expecting:
            out.append(str(resolve_config(arg)))
            expecting = False
        elif arg == "--config":
            out.append(arg)
            expecting = True
        elif arg.startswith("--config="):
            out.append("--config=" + str(resolve_config(arg.split("=", 1)[1])))
        else:
            out.append(arg)
    return out
