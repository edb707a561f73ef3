"""Hardware-in-the-loop tests: `pytest tests/hil --port sim` (default) or `--port /dev/ttyACM0`.

The plugin (`voicenode_tools.hil.plugin`) is registered as a pytest11 entry point of the host
package (`pip install -e .`, which `make setup` runs), so its options and fixtures are there
however pytest is started; this file only marks the tests as `hil`.
"""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/hil/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.hil)
