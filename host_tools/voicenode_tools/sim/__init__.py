"""The virtual board: the MicroPython Unix port behind a pseudo-terminal (see board.py)."""
