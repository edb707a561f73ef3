"""`voicenode demo`: the virtual board running the firmware on the shipped demo recording.

No board needed: the firmware is deployed to a virtual board (MicroPython Unix port behind a
pty, its own flash image), whose microphone plays `data/demo.wav` in real time. The node runs
the default wake word and the shipped command model (`DEMO_CONFIG`), as a user's node with
commands turned on does; its events are printed as they happen, then its status.

The recording is made by `make_recording()` (espeak-ng with a voice held out of wake-word
training, over a quiet noise floor), so it can be rebuilt and checked:

    python -m voicenode_tools.demo --make-recording host_tools/voicenode_tools/data/demo.wav
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

DEMO_WAV = Path(__file__).with_name("data") / "demo.wav"
#: The node's /config.json for the demo: the default wake word, then the shipped commands.
DEMO_CONFIG = {"status_every_s": 2, "commands": "commands_home"}
#: A voice held out of wake-word training (see train/synth.py ESPEAK_HELD_OUT_*).
VOICE = "en-gb-scotland+m3"
#: (text, espeak speed, silence after in seconds)
SCRIPT = [
    ("I was reading the paper this morning.", 150, 1.2),
    ("Hey Jarvis.", 135, 0.6),
    ("Turn on the kitchen light.", 150, 1.5),
    ("The weather will be fine tomorrow.", 150, 1.2),
    ("Hey Jarvis.", 135, 0.6),
    ("What time is it?", 150, 1.0),
]


def _speak(text: str, speed: int) -> np.ndarray:
    from voicenode_tools.audio import read_wav, resample

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "say.wav"
        subprocess.run(
            ["espeak-ng", "-v", VOICE, "-s", str(speed), "-w", str(wav), text], check=True
        )
        x, rate = read_wav(wav)
    return resample(x, rate, 16000)


def make_recording(path: Path, seed: int = 1) -> Path:
    """Synthesize the demo recording (16 kHz mono) at `path`."""
    from voicenode_tools.audio import write_wav

    parts = [np.zeros(8000, np.int16)]
    for text, speed, gap in SCRIPT:
        parts += [_speak(text, speed), np.zeros(int(gap * 16000), np.int16)]
    x = np.concatenate(parts).astype(np.float64)
    x *= 12000 / np.max(np.abs(x))  # speech peaks at -8.7 dBFS, as a near talker would
    rng = np.random.default_rng(seed)
    noise = np.cumsum(rng.normal(0, 1, len(x)))  # brown noise, high-passed a little
    noise -= np.convolve(noise, np.ones(400) / 400, mode="same")
    x += 120 * noise / (np.std(noise) + 1e-9)
    write_wav(path, np.clip(np.round(x), -32768, 32767).astype(np.int16))
    return path


def run_demo(
    wav: Path = DEMO_WAV,
    board: str | None = None,
    realtime: bool = True,
    flash_image: Path | None = None,
    out=sys.stdout,
) -> list[dict]:
    """Deploy to a virtual board listening to `wav` and print the node's events.

    Returns:
        The events the node printed (dicts), in order.
    """
    from voicenode_tools.audio import load_16k
    from voicenode_tools.device import deploy as deploy_mod
    from voicenode_tools.sim.listen import hear

    board = board or deploy_mod.DEFAULT_BOARD
    duration = len(load_16k(wav)) / 16000
    image = flash_image or Path.home() / ".cache" / "voicenode" / "demo" / "flash.img"
    image.parent.mkdir(parents=True, exist_ok=True)
    say = lambda msg: print(msg, file=out, flush=True)  # noqa: E731
    say(f"voicenode demo: a virtual board ({board}) hears {wav.name} ({duration:.1f} s)")
    events = []
    first = True
    for ev in hear(
        wav, dict(DEMO_CONFIG), board=board, flash_image=image, realtime=realtime, say=say
    ):
        if first:
            say("listening (events as the node prints them):")
            first = False
        events.append(ev)
        say("  " + json.dumps(ev))
    wakes = [e for e in events if e.get("event") == "wake"]
    intents = [e for e in events if e.get("event") == "intent"]
    say(
        f"done: {len(wakes)} wake event(s), {len(intents)} intent(s); the node's last status: "
        f"{json.dumps(events[-1])}"
    )
    return events


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--make-recording", metavar="OUT.wav", help="synthesize the demo recording")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if args.make_recording:
        print(make_recording(Path(args.make_recording), args.seed))
        return 0
    run_demo()
    return 0


if __name__ == "__main__":
    sys.exit(main())
