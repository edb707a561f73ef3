"""`voicenode listen --sim`: a recording through the virtual board's microphone.

The firmware is deployed to a fresh virtual board (its own temporary flash image) with the
chosen models and a config that names them; the board is reset so /main.py starts the node,
which reads the simulated microphone as fast as it can process it. The events the firmware
prints are collected until its status events show the node has heard the whole file.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from voicenode_tools.audio import write_wav
from voicenode_tools.cli import CommandError

#: Silence heard after the recording, so a word at its very end can still fire (the
#: reference path pads the recording with the same silence).
TAIL_S = 1.0
#: How long the firmware may take per second of audio before we give up (the Unix port runs
#: the node many times faster than real time; this only guards against a hang).
TIMEOUT_PER_AUDIO_S = 5.0


def listen_on_virtual_board(
    pcm: np.ndarray,
    words: list[str],
    cutoffs: dict[str, float],
    board: str | None = None,
    source: Path | None = None,
    flash_image: Path | None = None,
    models: Path | None = None,
) -> list[dict]:
    """Run the recording through the firmware on a virtual board; return its wake events.

    Args:
        pcm: int16 mono samples at 16 kHz (what the microphone hears).
        words: the wake words to run (model names).
        cutoffs: per-word cutoff overrides (0..1).
        board: the board definition deployed (default: the reference board).
        source: the firmware tree deployed (default: firmware/).
        models: the folder of models deployed with it (default: the shipped models/).
        flash_image: the flash image to use (default: a temporary one).

    Returns:
        The node's "wake" events, with "at" = seconds into the recording.
    """
    from voicenode_tools import FIRMWARE_DIR
    from voicenode_tools import boards as boards_mod
    from voicenode_tools.device import build as build_mod
    from voicenode_tools.device import deploy as deploy_mod
    from voicenode_tools.device import monitor, transport
    from voicenode_tools.sim.board import VirtualBoard

    board = board or deploy_mod.DEFAULT_BOARD
    source = source or FIRMWARE_DIR
    # The simulated microphone is calibrated to the board: it places each sample where the
    # board's conversion ((word << bit_delay) >> shift) finds it again, so the node hears the
    # recording's own samples.
    fmt = boards_mod.load(board).mic
    shift = fmt["shift"] - fmt.get("bit_delay", 0)
    duration = len(pcm) / 16000
    with tempfile.TemporaryDirectory(prefix="voicenode-listen-") as tmp:
        wav = Path(tmp) / "mic.wav"
        write_wav(wav, np.asarray(pcm, np.int16))  # then the microphone hears silence
        image = flash_image or Path(tmp) / "flash.img"
        with VirtualBoard(image, mic=str(wav), realtime=False, mic_shift=shift) as vb:
            port = vb.start()
            deploy_mod.deploy(port, board=board, source=source, reset=False,
                              models=models or build_mod.MODELS_DIR)
            cfg = {"wake_words": words, "cutoffs": cutoffs, "status_every_s": 1}
            t = transport.connect(port)
            try:
                t.fs_writefile("/config.json", json.dumps(cfg).encode())
            finally:
                transport.close(t)
            vb.hard_reset()
            return _collect(port, duration, monitor)


def _collect(port, duration, monitor):
    wakes = []
    deadline = time.monotonic() + 20 + TIMEOUT_PER_AUDIO_S * (duration + TAIL_S)
    end = duration + TAIL_S
    for line in monitor.events(port, seconds=max(0.0, deadline - time.monotonic())):
        ev = json.loads(line)
        kind = ev.get("event")
        if kind == "wake" and ev["at"] <= end:
            wakes.append(
                {"event": "wake", "word": ev["word"], "score": ev["score"], "at": ev["at"]}
            )
        elif kind == "error":
            raise CommandError(f"the node reported an error: {ev}")
        elif kind == "status" and ev.get("at", 0) >= end:
            return wakes
    raise CommandError("the virtual board did not finish the recording in time")
