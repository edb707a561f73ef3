"""The front-end parameters, loaded from the firmware's own file (must match training).

`firmware/voicenode/dsp/params.py` is the single source: this module executes that file, so
the host reference and the chip can never disagree about a number.
"""

import importlib.util

from .. import FIRMWARE_DIR

PARAMS_PATH = FIRMWARE_DIR / "voicenode" / "dsp" / "params.py"
TABLES_PATH = FIRMWARE_DIR / "voicenode" / "dsp" / "tables.py"


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_params = _load("_voicenode_dsp_params", PARAMS_PATH)

#: Every public upper-case name of the firmware's params.py.
PARAMS = {k: v for k, v in vars(_params).items() if k.isupper()}
globals().update(PARAMS)

__all__ = sorted(PARAMS)


def load_tables():
    """Execute the firmware's generated `tables.py` and return it as a module."""
    return _load("_voicenode_dsp_tables", TABLES_PATH)
