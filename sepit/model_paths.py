"""Where a config's model lives: a local file or folder, or a tiny part this machine builds (`tiny:` and
`pretrained:` names, for tests and the CPU demo). No model hub is ever asked."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from sepit.cache import cache_dir
from sepit.data.errors import DataError

TINY_SCHEME = "tiny:"
PRETRAINED_SCHEME = "pretrained:"  # tiny parts pretrained once from configs/pretrain/tiny.yaml (sepit.tiny.pretrained)
TINY_MODELS = ("llm", "text_encoder", "esm2")


def resolve_model_path(spec: str | Path) -> Path:
    """A model location from a config: an existing local path, `tiny:<name>` for a tiny model built here
    (`sepit.tiny.builders`), or `pretrained:<name>` for a tiny part pretrained here (`sepit.tiny.pretrained`).

    Tiny models are built once into $SEPIT_CACHE/tiny-models, in a temporary folder renamed into place, so
    processes starting together never see half-written files.
    """
    spec = str(spec)
    if spec.startswith(PRETRAINED_SCHEME):
        from sepit.tiny.pretrained import resolve_pretrained

        return resolve_pretrained(spec[len(PRETRAINED_SCHEME):])
    if spec.startswith(TINY_SCHEME):
        return _tiny(spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(spec, "model not found", "Give a local file or folder (no model hub is used), e.g. the "
                        "released ESM-2 .pt file or a Hugging Face model folder, or tiny:llm, tiny:text_encoder, "
                        "tiny:esm2 for the tiny random models, pretrained:esm2 or pretrained:llm for the pretrained ones.")
    return path


def _tiny(spec: str) -> Path:
    from sepit.tiny.builders import build_all

    name = spec[len(TINY_SCHEME):]
    if name not in TINY_MODELS:
        raise DataError(spec, "unknown tiny model", f"Choose one of {', '.join(TINY_SCHEME + n for n in TINY_MODELS)}.")
    root = cache_dir() / "tiny-models"
    if not root.is_dir():
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tiny-models-", dir=root.parent))
        build_all(staging)
        try:
            os.rename(staging, root)
        except OSError:  # another process finished first: same arguments, same files
            shutil.rmtree(staging, ignore_errors=True)
    return build_all(root)[name]
