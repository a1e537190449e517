import arks_common


def test_exported_names_are_exactly_the_curated_surface() -> None:
    exported = {name for name in dir(arks_common) if not name.startswith("_")}
    modules = {name for name in exported if type(getattr(arks_common, name)).__name__ == "module"}
    assert exported - modules == set(arks_common.__all__) - {"__version__"}
    for name in arks_common.__all__:
        assert getattr(arks_common, name) is not None
