import pytest

from sepit.registry import Registry, RegistryError


def test_lazy_entries_import_on_first_use_only():
    registry = Registry("model", "sepit.test-nothing")
    registry.register("json_dumps", "json:dumps")
    assert registry.names() == ["json_dumps"]
    import json

    assert registry.get("json_dumps") is json.dumps


def test_unknown_name_lists_the_known_ones():
    registry = Registry("model", "sepit.test-nothing")
    registry.register("b", object())
    registry.register("a", object())
    with pytest.raises(RegistryError, match=r"model 'c': unknown; known models: a, b\. Check the spelling, or install "
                                            r"the plug-in that registers it under the entry-point group 'sepit.test-nothing'"):
        registry.get("c")


def test_a_name_registered_twice_is_an_error():
    registry = Registry("task", "sepit.test-nothing")

    @registry.register("x")
    def first():
        pass

    with pytest.raises(RegistryError, match="task 'x': is registered twice"):
        registry.register("x", "other:thing", source="entry point of pkg")


def test_a_plug_in_that_fails_to_import_is_named():
    registry = Registry("task", "sepit.test-nothing")
    registry.register("broken", "no_such_module_xyz:suite", source="entry point of third-party")
    with pytest.raises(RegistryError, match=r"task 'broken' \(entry point of third-party, 'no_such_module_xyz:suite'\): "
                                            r"failed to load: No module named 'no_such_module_xyz'"):
        registry.get("broken")


def test_a_registration_for_a_block_only():
    from sepit.registry import MODELS

    with MODELS.registered("block_only", "fake_models:CoinModel"):
        assert "block_only" in MODELS.names()
    assert "block_only" not in MODELS.names()
    assert "majority" in MODELS.names()  # the shipped entries stay
