"""Hardware-in-the-loop tests: one suite for a real board (`--port /dev/ttyACM0`) and for the
virtual board (`--port sim`).

- `plugin`: the pytest plugin (options, fixtures); registered as a `pytest11` entry point.
- `link`: `NodeLink`, raw-REPL calls with deadlines, audio injection, a diagnosis on failure.
- `check`: the connection check (port, MicroPython, version, deployed).
- `clips`: wake-word and negative clips synthesized with espeak-ng at test time.
- `acoustic`: clips played into a microphone (loudspeaker, or the virtual board's).
- `soak`: hours of mixed audio with heap, counters and detections recorded.
"""
