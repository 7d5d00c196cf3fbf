import sys
from pathlib import Path

import pytest

# tests/ holds helper modules (gradcheck, oracle) imported by plain name.
sys.path.insert(0, str(Path(__file__).parent))


# --- reference frameworks (tests/test_reference*.py, tests/test_check*.py) ----------------------
# framework -> (pytest marker, modules it needs); pyproject declares torch, tf and keras.
REFERENCE_FRAMEWORKS = {
    "torch": ("torch", ("torch",)),
    "tf": ("tf", ("tensorflow",)),
    "keras": ("keras", ("keras",)),
    "keras-tensorflow": ("keras_tensorflow", ("keras", "tensorflow")),
    "keras-torch": ("keras_torch", ("keras", "torch")),
    "keras-jax": ("keras_jax", ("keras", "jax")),
}


def framework_param(name, *values, id=None):
    """A pytest.param carrying `name`'s marker, for parametrizing over frameworks."""
    mark = getattr(pytest.mark, REFERENCE_FRAMEWORKS[name][0])
    return pytest.param(*values, marks=mark, id=id)


@pytest.fixture(scope="session")
def reference_runner():
    """reference_runner(name) -> a Runner started once per session (keras-* workers included).

    A framework that is not installed is skipped with the reason (pytest.importorskip); an
    installed one never is.
    """
    from reference.runners import get_runner

    started = {}

    def get(name):
        if name not in started:
            for mod in REFERENCE_FRAMEWORKS[name][1]:
                pytest.importorskip(mod, reason=f"{name} needs {mod}: pip install 'skylark[all]'")
            started[name] = get_runner(name)
        return started[name]

    yield get
    for runner in started.values():
        runner.close()
