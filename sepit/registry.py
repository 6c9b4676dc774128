"""Registries of models, tasks and metric profiles: a dict and a decorator, filled lazily from entry points.

Entries are `"module:attr"` strings until first use, so listing names imports nothing heavy (no torch).
A package registers plug-ins under the entry-point groups `sepit.models`, `sepit.tasks`, `sepit.metrics`, `sepit.commands`,
exactly as this repository's own `sepit_baselines`, `sepit_benchmarks` and `sepit_leaderboard` packages
(the folders baselines/, benchmarks/, leaderboard/) do.
"""

from __future__ import annotations

import contextlib
import importlib
from importlib.metadata import entry_points
from typing import Any

from sepit.errors import InputError


class RegistryError(InputError, LookupError):
    """A name no plug-in registers, registered twice, or failing to load: the user's input or installation."""


class Registry:
    def __init__(self, kind: str, group: str):
        self.kind, self.group = kind, group
        self._entries: dict[str, Any] = {}
        self._sources: dict[str, str] = {}
        self._scanned = False

    def register(self, name: str, target: Any = None, *, source: str = "code") -> Any:
        """Register `target` (an object or a lazy "module:attr" string); without a target, a decorator."""
        if target is None:
            return lambda obj: self.register(name, obj, source=source)
        if name in self._entries and self._entries[name] != target and self._sources[name] != source:
            raise RegistryError(f"{self.kind} {name!r}", f"is registered twice: by {self._sources[name]} and by "
                                f"{source}", "Rename one of them.")
        self._entries[name], self._sources[name] = target, source
        return target

    @contextlib.contextmanager
    def registered(self, name: str, target: Any, source: str = "code"):
        """`name` -> `target` within the block only; the registry is as before afterwards (tests, one-off runs)."""
        self._scan()
        before = (self._entries.get(name), self._sources.get(name))
        self.register(name, target, source=source)
        try:
            yield target
        finally:
            if before[0] is None:
                self._entries.pop(name, None)
                self._sources.pop(name, None)
            else:
                self._entries[name], self._sources[name] = before

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for point in entry_points(group=self.group):
            dist = getattr(point.dist, "name", "?")
            self.register(point.name, point.value, source=f"entry point of {dist}")

    def names(self) -> list[str]:
        self._scan()
        return sorted(self._entries)

    def get(self, name: str) -> Any:
        self._scan()
        if name not in self._entries:
            known = ", ".join(self.names()) or "none"
            raise RegistryError(f"{self.kind} {name!r}", f"unknown; known {self.kind}s: {known}",
                                f"Check the spelling, or install the plug-in that registers it under the "
                                f"entry-point group {self.group!r}.")
        target = self._entries[name]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            try:
                obj = importlib.import_module(module)
                for part in filter(None, attr.split(".")):
                    obj = getattr(obj, part)
            except (ImportError, AttributeError) as err:
                raise RegistryError(f"{self.kind} {name!r} ({self._sources[name]}, {target!r})",
                                    f"failed to load: {err}", "Reinstall or remove the package that provides it.") from err
            target = self._entries[name] = obj
        return target


def call_if_factory(obj: Any, accepted: tuple[type, ...]) -> Any:
    """Entry points may name an object or a zero-argument function that builds it."""
    return obj if isinstance(obj, accepted) or not callable(obj) else obj()


MODELS = Registry("model", "sepit.models")
TASKS = Registry("task", "sepit.tasks")
METRICS = Registry("metric profile", "sepit.metrics")
# Extra `sepit` subcommands: a dict of typed functions (and "_help"), as `leaderboard` registers its own.
COMMANDS = Registry("command", "sepit.commands")
