import subprocess
import sys

import arks_common


def test_exported_names_are_exactly_the_curated_surface() -> None:
    assert set(dir(arks_common)) == set(arks_common.__all__)
    assert set(arks_common.__all__) == {*arks_common._EXPORTS, "__version__"}
    for name in arks_common.__all__:
        assert getattr(arks_common, name) is not None


def test_importing_a_small_module_does_not_load_everything() -> None:
    code = (
        "import sys, arks_common.events; "
        "print(any(m.startswith(('arks_common.resources', 'nats')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
