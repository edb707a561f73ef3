"""`voicenode listen --sim`: a recording through the virtual board's microphone.

The firmware is deployed to a fresh virtual board (its own temporary flash image) with the
chosen models and a config that names them; the board is reset so /main.py starts the node,
which reads the simulated microphone as fast as it can process it. The events the firmware
prints are collected until its status events show the node has heard the whole file.
"""

from __future__ import annotations

import contextlib
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


def hear(
    wav: Path,
    cfg: dict,
    board: str | None = None,
    source: Path | None = None,
    models: Path | None = None,
    flash_image: Path | None = None,
    realtime: bool = False,
    say=None,
):
    """Deploy to a virtual board whose microphone plays `wav`; yield the node's events.

    The firmware (with the board's files and the models) is deployed, `cfg` becomes the
    node's /config.json (with status events, so progress shows), and a hard reset starts
    the node. Events are yielded as dicts until a status event shows the node has heard the
    whole recording and TAIL_S of silence after it; then the board stops.

    Args:
        wav: the recording (16 kHz mono WAV).
        cfg: the node's settings (voicenode.config); "status_every_s" defaults to 1.
        board, source, models: what is deployed (defaults: the reference board, firmware/,
            the shipped models/).
        flash_image: the board's flash (default: a temporary one).
        realtime: play the recording in real time (False: as fast as the node takes it).
        say: called with progress lines (virtual board started, deploy report).

    Yields:
        Each event dict, in order; the last is that status event.

    Raises:
        CommandError: the node did not hear the recording in time.
    """
    from voicenode_tools import FIRMWARE_DIR
    from voicenode_tools import boards as boards_mod
    from voicenode_tools.audio import load_16k
    from voicenode_tools.device import build as build_mod
    from voicenode_tools.device import deploy as deploy_mod
    from voicenode_tools.device import monitor, transport
    from voicenode_tools.sim.board import VirtualBoard

    board = board or deploy_mod.DEFAULT_BOARD
    # The simulated microphone is calibrated to the board: it places each sample where the
    # board's conversion ((word << bit_delay) >> shift) finds it again, so the node hears the
    # recording's own samples.
    fmt = boards_mod.load(board).mic
    shift = fmt["shift"] - fmt.get("bit_delay", 0)
    end = len(load_16k(wav)) / 16000 + TAIL_S
    with tempfile.TemporaryDirectory(prefix="voicenode-hear-") as tmp:
        image = flash_image or Path(tmp) / "flash.img"
        with VirtualBoard(image, mic=str(wav), realtime=realtime, mic_shift=shift) as vb:
            port = vb.start()
            if say:
                say(f"virtual board on {port}")
            report = deploy_mod.deploy(
                port,
                board=board,
                source=source or FIRMWARE_DIR,
                reset=False,
                models=models or build_mod.MODELS_DIR,
            )
            if say:
                say(f"deploy: {report.summary()}")
            t = transport.connect(port, soft_reset=False)  # the hard reset below restarts it
            try:
                t.fs_writefile(
                    "/config.json", json.dumps(dict({"status_every_s": 1}, **cfg)).encode()
                )
            finally:
                transport.close(t)
            vb.hard_reset()
            pace = 1.5 if realtime else TIMEOUT_PER_AUDIO_S
            deadline = time.monotonic() + 30 + pace * end
            # closing(): the port is released before the board stops, not when GC finds it
            lines = monitor.events(port, seconds=max(0.0, deadline - time.monotonic()))
            with contextlib.closing(lines):
                for line in lines:
                    ev = json.loads(line)
                    yield ev
                    if ev.get("event") == "status" and ev.get("at", 0) >= end:
                        return
            raise CommandError("the virtual board did not finish the recording in time")


def listen_on_virtual_board(
    pcm: np.ndarray,
    words: list[str],
    cutoffs: dict[str, float],
    board: str | None = None,
    source: Path | None = None,
    flash_image: Path | None = None,
    models: Path | None = None,
    commands: str | None = None,
) -> list[dict]:
    """Run the recording through the firmware on a virtual board; return its wake events
    (and intent events, with a command model).

    Args:
        pcm: int16 mono samples at 16 kHz (what the microphone hears).
        words: the wake words to run (model names).
        cutoffs: per-word cutoff overrides (0..1).
        board: the board definition deployed (default: the reference board).
        source: the firmware tree deployed (default: firmware/).
        models: the folder of models deployed with it (default: the shipped models/).
        flash_image: the flash image to use (default: a temporary one).
        commands: the command model the node runs after a wake (config "commands"), or None.

    Returns:
        The node's "wake" and "intent" events, with "at" = seconds into the recording.
    """
    end = len(pcm) / 16000 + TAIL_S
    wakes = []
    refused = []  # the node's messages for wake models it could not load
    with tempfile.TemporaryDirectory(prefix="voicenode-listen-") as tmp:
        wav = Path(tmp) / "mic.wav"
        write_wav(wav, np.asarray(pcm, np.int16))  # then the microphone hears silence
        cfg = {"wake_words": words, "cutoffs": cutoffs}
        if commands:
            cfg["commands"] = commands
        with contextlib.closing(hear(wav, cfg, board, source, models, flash_image)) as session:
            for ev in session:
                kind = ev.get("event")
                if kind in ("model_error", "default_model_error"):
                    refused.append(ev.get("error", str(ev)))
                    continue
                if refused:  # the node has gone on past its models: say what it refused
                    break
                if kind == "wake" and ev["at"] <= end:
                    wakes.append(
                        {"event": "wake", "word": ev["word"], "score": ev["score"], "at": ev["at"]}
                    )
                elif kind == "intent" and ev["at"] <= end:
                    keys = ("intent", "slots", "score", "reason")
                    wakes.append(
                        {"event": "intent", "at": ev["at"], **{k: ev[k] for k in keys if k in ev}}
                    )
                elif kind == "error":
                    hint = ""
                    if ev.get("where") == "commands":
                        hint = (
                            " (the node runs on without commands, so its events would not be"
                            " the reference's; --no-commands runs wake words only)"
                        )
                    raise CommandError(f"the node reported an error: {ev}{hint}")
    if refused:
        # As the reference refuses the models (`reference.node.events`): events from the
        # fallback model, or from none, would not be the ones asked for.
        raise CommandError("the node refused its wake models: " + "; ".join(refused))
    return wakes
