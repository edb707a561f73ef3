"""The soak: hours of mixed audio through the node, its heap and detections recorded.

The stream is built from a pool of clips made once with espeak-ng (the wake phrase in a few
voices, sentences without it, noise, quiet room), chosen at random with a seed, so N hours of
audio cost N hours only on the node's side. It goes through the node's test input (on the
virtual board this runs as fast as the node computes), with a status request every few
seconds of audio: heap, counters, uptime. Every event comes back tagged with its sample
position, so every detection has its time in the audio.

Pass criteria (the JUnit cases):
    no_crash         the node answered to the end (no NodeGone, no Python error, no "error"
                     event);
    heap_flat        after warm-up, heap_alloc (after gc.collect()) stays within HEAP_TOLERANCE;
    detections_timed every detection has a position in the audio and the node's own "t";
    wakes_counted    the node's own "wakes" counter rose by exactly the wake events that came
                     back (none lost on the way, none counted twice).
Reported, not judged (the suite's wake tests judge accuracy): detections matched to spoken
wake phrases, misses, false wakes per hour, latency.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import clips

#: Bytes the heap may move after warm-up and still count as flat.
HEAP_TOLERANCE = 1024
#: Audio seconds of warm-up before the heap must be flat (buffers, first gc, interning).
WARMUP_SECONDS = 60.0
#: A detection this close to the end of a spoken wake phrase (seconds before/after) is a hit.
MATCH_BEFORE, MATCH_AFTER = 0.5, 2.0
#: Event kinds that count as a detection.
WAKE_EVENTS = ("wake", "detection", "wakeword")


@dataclass
class SoakResult:
    """Everything a soak recorded.

    Attributes:
        rate: samples per second.
        audio_seconds: audio streamed.
        wall_seconds: how long it took.
        heap: (audio second, heap_alloc, heap_free) per status sample.
        counters: the node's counters after the soak (the last status sample's if it
            stopped early).
        counters_before: the node's counters before it.
        events: (audio second, event) for every event.
        expected: audio seconds where a spoken wake phrase ends.
        crash: what stopped the soak early, or "".
    """

    rate: int
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    heap: list = field(default_factory=list)
    counters: dict = field(default_factory=dict)
    counters_before: dict = field(default_factory=dict)
    events: list = field(default_factory=list)
    expected: list = field(default_factory=list)
    crash: str = ""
    port: str = ""

    @property
    def detections(self) -> list:
        return [(t, e) for t, e in self.events if e.get("event") in WAKE_EVENTS]

    @property
    def errors(self) -> list:
        return [(t, e) for t, e in self.events if e.get("event") == "error"]

    def heap_after_warmup(self) -> list:
        warm = min(WARMUP_SECONDS, self.audio_seconds / 10)
        return [h for t, h, _ in self.heap if t >= warm]

    @property
    def heap_spread(self) -> int | None:
        h = self.heap_after_warmup()
        return (max(h) - min(h)) if len(h) >= 2 else None

    def match(self) -> tuple[list, int, list]:
        """(latencies of matched detections, misses, false detections' times)."""
        dets = sorted(t for t, _ in self.detections)
        used = set()
        lat = []
        misses = 0
        for end in self.expected:
            hit = None
            for i, t in enumerate(dets):
                if i not in used and end - MATCH_BEFORE <= t <= end + MATCH_AFTER:
                    hit = i
                    break
            if hit is None:
                misses += 1
            else:
                used.add(hit)
                lat.append(dets[hit] - end)
        false = [t for i, t in enumerate(dets) if i not in used]
        return lat, misses, false

    def checks(self) -> dict:
        """name -> (passed, message) for the pass criteria."""
        spread = self.heap_spread
        untimed = [e for _, e in self.detections if "t" not in e]
        out = {
            "no_crash": (
                not self.crash and not self.errors,
                self.crash or (f"error events: {self.errors[:3]}" if self.errors else "ok"),
            ),
            "heap_flat": (
                spread is not None and spread <= HEAP_TOLERANCE,
                f"heap_alloc spread after warm-up {spread} bytes (limit {HEAP_TOLERANCE})"
                if spread is not None
                else "too few heap samples",
            ),
            "detections_timed": (
                not untimed,
                f"{len(self.detections)} detections, {len(untimed)} without a time",
            ),
            "wakes_counted": self._wakes_counted(),
        }
        return out

    def _wakes_counted(self) -> tuple[bool, str]:
        if self.crash or "wakes" not in self.counters:
            return False, "no final counters (the soak stopped early or the node has none)"
        counted = self.counters["wakes"] - self.counters_before.get("wakes", 0)
        return (
            counted == len(self.detections),
            f"the node counted {counted} wakes, {len(self.detections)} wake events came back",
        )

    @property
    def passed(self) -> bool:
        return all(ok for ok, _ in self.checks().values())

    def summary(self) -> str:
        lat, misses, false = self.match()
        hours = self.audio_seconds / 3600
        lines = [
            f"soak on {self.port}: {hours:.2f} h of audio in {self.wall_seconds / 60:.1f} min "
            f"({self.audio_seconds / max(self.wall_seconds, 1e-9):.1f}x real time)",
        ]
        for name, (ok, msg) in self.checks().items():
            lines.append(f"  {'PASS' if ok else 'FAIL'} {name}: {msg}")
        if self.heap:
            h = [x for _, x, _ in self.heap]
            lines.append(
                f"  heap_alloc {min(h)}..{max(h)} bytes over {len(h)} samples, "
                f"heap_free last {self.heap[-1][2]}"
            )
        lines.append(
            f"  wake phrases spoken {len(self.expected)}, detected {len(lat)}, missed {misses}, "
            f"false wakes {len(false)} ({len(false) / max(hours, 1e-9):.2f}/h)"
        )
        if lat:
            a = np.array(lat) * 1000
            lines.append(
                f"  latency after the end of the phrase: median {np.median(a):.0f} ms, "
                f"p90 {np.percentile(a, 90):.0f} ms, max {a.max():.0f} ms"
            )
        if self.counters:
            lines.append("  counters " + json.dumps(self.counters, sort_keys=True))
        return "\n".join(lines)


class MixedAudio:
    """An endless seeded mix of wake phrases, other speech, noise and quiet room.

    Args:
        phrase: the wake phrase (None: no positives).
        rate: sample rate.
        seed: the mix's seed.
    """

    #: Share of each kind of segment.
    MIX = (("wake", 0.15), ("speech", 0.35), ("noise", 0.2), ("quiet", 0.3))

    def __init__(self, phrase: str | None, rate: int, seed: int = 1):
        self.rate = rate
        self.rng = np.random.default_rng(seed)
        self.pool = {"wake": [], "speech": [], "noise": [], "quiet": []}
        if phrase:
            for i, v in enumerate(clips.VOICES):
                self.pool["wake"].append(clips.positive(phrase, v, seed=seed + i, sample_rate=rate))
        for i, text in enumerate(clips.NEGATIVES):
            v = clips.VOICES[i % len(clips.VOICES)]
            self.pool["speech"].append(clips.negative(text, v, seed=seed + i, sample_rate=rate))
        for i, level in enumerate((150, 400, 900)):
            self.pool["noise"].append(clips.noise_clip(3.0, seed + i, level, rate))
        self.pool["quiet"].append(
            clips.Clip("quiet", clips.silence(4.0, seed, rate), rate, 0, 0, False)
        )
        kinds = [(k, p) for k, p in self.MIX if self.pool[k]]
        total = sum(p for _, p in kinds)
        self.kinds = [k for k, _ in kinds]
        self.probs = [p / total for _, p in kinds]

    def segments(self, seconds: float):
        """(pcm, word_end or None) until `seconds` of audio; the last one is cut to fit."""
        left = int(seconds * self.rate)
        while left > 0:
            kind = self.kinds[self.rng.choice(len(self.kinds), p=self.probs)]
            clip = self.pool[kind][self.rng.integers(len(self.pool[kind]))]
            pcm = clip.pcm[:left]
            end = clip.word_end if clip.positive and clip.word_end < len(pcm) else None
            yield pcm, end
            left -= len(pcm)

    def chunks(self, seconds: float, chunk: int, expected: list):
        """Chunks of at most `chunk` samples; appends spoken phrases' end times to `expected`."""
        pos = 0
        buf = np.zeros(0, np.int16)
        for pcm, end in self.segments(seconds):
            if end is not None:
                expected.append((pos + len(buf) + end) / self.rate)
            buf = np.concatenate([buf, pcm])
            while len(buf) >= chunk:
                yield buf[:chunk]
                pos += chunk
                buf = buf[chunk:]
        if len(buf):
            yield buf


def run(
    link,
    seconds: float,
    phrase: str | None,
    seed: int = 1,
    status_every_s: float = 5.0,
    chunk: int = 1024,
    window: int = 8,
    progress=None,
) -> SoakResult:
    """Stream `seconds` of mixed audio through `link` (a NodeLink) and record it all.

    Args:
        link: a `NodeLink` to a deployed node.
        seconds: audio seconds to stream.
        phrase: the wake phrase (None: no positives).
        seed: the mix's seed.
        status_every_s: audio seconds between status samples.
        chunk: samples per line.
        window: lines in flight.
        progress: called with the SoakResult after every status sample.
    """
    from .link import HilError

    rate = clips.rate()
    res = SoakResult(rate=rate, port=link.path)
    mix = MixedAudio(phrase, rate, seed)
    every = max(1, int(status_every_s * rate / chunk))

    def on_event(pos, ev):
        res.events.append((pos / rate, ev))

    def on_status(pos, st):
        res.heap.append((pos / rate, st["heap_alloc"], st["heap_free"]))
        res.counters = st.get("counters", {})
        res.audio_seconds = pos / rate
        if progress:
            progress(res)

    t0 = time.monotonic()
    try:
        res.counters_before = link.status().get("counters", {})
        out = link.stream(
            mix.chunks(seconds, chunk, res.expected),
            window=window,
            status_every=every,
            on_event=on_event,
            on_status=on_status,
            keep=False,
            chunk=chunk,
        )
        res.audio_seconds = out.samples / rate
        if out.reason != "quit":
            res.crash = f"the test input ended early: {out.reason} {out.detail}".strip()
        else:  # the counters after the last event (the last sample may be seconds before it)
            res.counters = link.status().get("counters", {})
    except HilError as e:
        res.crash = str(e)
    res.wall_seconds = time.monotonic() - t0
    # Phrases after the point where the stream stopped were never spoken.
    res.expected = [t for t in res.expected if t <= res.audio_seconds]
    return res


def write_junit(res: SoakResult, path: Path, suite: str = "voicenode-hil-soak") -> None:
    """The soak's pass criteria as a JUnit XML suite (one test case each)."""
    import xml.etree.ElementTree as ET

    checks = res.checks()
    failures = sum(1 for ok, _ in checks.values() if not ok)
    ts = ET.Element(
        "testsuite",
        name=suite,
        tests=str(len(checks)),
        failures=str(failures),
        errors="0",
        time=f"{res.wall_seconds:.1f}",
    )
    props = ET.SubElement(ts, "properties")
    lat, misses, false = res.match()
    for k, v in {
        "port": res.port,
        "audio_hours": f"{res.audio_seconds / 3600:.3f}",
        "detections": len(res.detections),
        "phrases_spoken": len(res.expected),
        "missed": misses,
        "false_wakes": len(false),
        "heap_spread_bytes": res.heap_spread,
    }.items():
        ET.SubElement(props, "property", name=k, value=str(v))
    for name, (ok, msg) in checks.items():
        tc = ET.SubElement(ts, "testcase", classname=suite, name=name, time="0")
        if ok:
            ET.SubElement(tc, "system-out").text = msg
        else:
            ET.SubElement(tc, "failure", message=msg).text = msg
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(ts).write(path, encoding="utf-8", xml_declaration=True)


def plot(res: SoakResult, path: Path) -> None:
    """A PNG: heap over audio time (top), detections and spoken phrases (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 5), sharex=True, height_ratios=[3, 1])
    if res.heap:
        t = np.array([x[0] for x in res.heap]) / 3600
        ax1.plot(t, [x[1] for x in res.heap], lw=1, color="C0")
        ax1.set_ylabel("heap_alloc (bytes)", color="C0")
        ax1b = ax1.twinx()
        ax1b.plot(t, [x[2] for x in res.heap], lw=1, color="C1")
        ax1b.set_ylabel("heap_free (bytes)", color="C1")
        spread = res.heap_spread
        if spread is not None:
            ax1.text(
                0.01,
                0.95,
                f"after warm-up: heap_alloc within {spread} bytes",
                transform=ax1.transAxes,
                va="top",
            )
    ax1.set_title(f"soak on {res.port}: {res.audio_seconds / 3600:.2f} h of audio")
    lat, misses, false = res.match()
    hits = [t for t, _ in res.detections if t not in set(false)]
    ax2.eventplot(
        [
            [t / 3600 for t in res.expected],
            [t / 3600 for t in hits],
            [t / 3600 for t in false],
        ],
        lineoffsets=[2, 1, 0],
        colors=["grey", "green", "red"],
        linelengths=0.8,
    )
    ax2.set_yticks([2, 1, 0], ["spoken", "detected", "false"])
    ax2.set_xlabel("audio time (hours)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save(res: SoakResult, out_dir: Path) -> dict:
    """Write junit.xml, summary.txt, soak.png and detections.jsonl into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "junit": out_dir / "soak-junit.xml",
        "summary": out_dir / "soak-summary.txt",
        "plot": out_dir / "soak.png",
        "events": out_dir / "soak-events.jsonl",
    }
    write_junit(res, files["junit"])
    files["summary"].write_text(res.summary() + "\n")
    plot(res, files["plot"])
    with open(files["events"], "w") as f:
        for t, e in res.events:
            f.write(json.dumps({"audio_s": round(t, 3), **e}) + "\n")
    return files
