"""Deprecated: the common model interface moved to `sepit.interface`; this name stays for one release so that
plug-ins written against it keep working."""

import warnings

from sepit.interface import GenerationSettings, ModelCard, Modality, ProteinLLM  # noqa: F401
from sepit.interface import GenerationSettings as GenerationConfig  # noqa: F401

warnings.warn("sepit.models.interface moved to sepit.interface; import from there", DeprecationWarning, stacklevel=2)
