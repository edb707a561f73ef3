"""Host tools for the private voice node."""

from pathlib import Path

__version__ = "0.1.0"

#: The repository root (the host tools are installed in editable mode from it).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: What runs on the chip.
FIRMWARE_DIR = REPO_ROOT / "firmware"
#: One folder per supported board.
BOARDS_DIR = REPO_ROOT / "boards"
