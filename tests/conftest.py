import sys
from pathlib import Path

import pytest

# tests/ holds helper modules (gradcheck, oracle, equivalence) imported by plain name.
sys.path.insert(0, str(Path(__file__).parent))

from reference.frameworks import COMPARED, FRAMEWORKS
from reference.runners.runner import FrameworkUnavailable, require_installed


def pytest_configure(config):
    """One marker per framework, from the framework table (reference.frameworks)."""
    for fw in FRAMEWORKS.values():
        if fw.marker:
            config.addinivalue_line("markers", f"{fw.marker}: needs {fw.name} "
                                               f"({', '.join(fw.modules)})")


def needs(framework):
    """Skip the test, saying why, when `framework` is not installed here."""
    fw = FRAMEWORKS[framework]
    try:
        require_installed(fw.name, fw.modules, fw.install)
    except FrameworkUnavailable as e:
        pytest.skip(f"{framework} is not installed: {e.reason}")


def framework_param(name, *values, id=None):
    """A pytest.param carrying `name`'s marker, for parametrizing over frameworks."""
    return pytest.param(*values, marks=getattr(pytest.mark, FRAMEWORKS[name].marker), id=id)


# Every compared framework as a marked parameter: @pytest.mark.parametrize("framework", ...).
FRAMEWORK_PARAMS = [framework_param(f, f, id=f) for f in COMPARED]
# The ones that train (forward-only runtimes such as onnxruntime compute no gradient).
TRAINING_PARAMS = [framework_param(f, f, id=f) for f in COMPARED
                   if not FRAMEWORKS[f].forward_only]


@pytest.fixture(scope="session", autouse=True)
def _close_runners():
    """The runners (and Keras worker subprocesses) started by tests, closed once at the end."""
    yield
    from equivalence import RUNNERS

    for runner in RUNNERS.values():
        runner.close()
    RUNNERS.clear()


@pytest.fixture(scope="session")
def reference_runner():
    """reference_runner(name) -> the session's Runner for `name` (keras-* workers included);
    a framework that is not installed skips the test with the reason, an installed one never."""
    from equivalence import runner

    return runner
