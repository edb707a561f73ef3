"""Broad phone classes: the units the command recogniser's network hears.

espeak-ng says what it will speak as IPA (`espeak-ng -q --ipa --sep=_ -v VOICE TEXT`), for any
of its voices, foreign accents included. Those symbols are folded into 38 broad English classes
(ARPAbet-like names; vowels that accents swap, such as the o of "on" in American and British
English, share a class) plus the CTC blank, class 0. Training labels come from the voice that
said the clip; the grammar's pronunciations from the American and British voices
(`voicenode_tools.grammar`).

    >>> phonemize("turn on the light", "en-us")
    ['T', 'ER', 'N', 'AA', 'N', 'DH', 'AH', 'L', 'AY', 'T']
"""

from __future__ import annotations

import functools
import re
import subprocess

BLANK = "_"
#: Class 0 is the CTC blank (silence, noise, transitions).
CLASSES = (
    BLANK,
    "AA", "AE", "AH", "ER", "EH", "IH", "IY", "UH", "UW", "OW", "EY", "AY", "AW", "OY",
    "P", "B", "T", "D", "K", "G", "F", "V", "TH", "DH", "S", "Z", "SH", "ZH", "HH", "CH",
    "JH", "M", "N", "NG", "L", "R", "W", "Y",
)  # fmt: skip
INDEX = {c: i for i, c in enumerate(CLASSES)}

# IPA (stress and length removed) -> classes. Multi-symbol entries first (longest match).
_IPA = {
    "eɪ": "EY", "aɪ": "AY", "ʌɪ": "AY", "ɑɪ": "AY", "ɔɪ": "OY", "oɪ": "OY", "aʊ": "AW",
    "ɑʊ": "AW", "oʊ": "OW", "əʊ": "OW", "ɔʊ": "OW", "tʃ": "CH", "dʒ": "JH", "ʧ": "CH",
    "ʤ": "JH", "ts": "T S", "dz": "D Z", "ɪə": "IH AH", "eə": "EH AH", "ɛə": "EH AH",
    "ʊə": "UH AH", "aə": "AA AH", "iə": "IY AH", "uə": "UW AH", "ɔə": "AA AH",
    "ɑ": "AA", "ɒ": "AA", "ɔ": "AA", "a": "AA", "ɶ": "AA",
    "æ": "AE", "ɛ": "EH", "e": "EH", "ɜ": "ER", "ɚ": "ER", "ɝ": "ER",
    "ʌ": "AH", "ɐ": "AH", "ə": "AH", "ɵ": "AH", "ø": "AH", "œ": "AH", "ɘ": "AH", "ɞ": "AH",
    "ɤ": "AH", "ɪ": "IH", "ᵻ": "IH", "ʏ": "IH", "ɨ": "IH", "i": "IY", "y": "IY",
    "ʊ": "UH", "u": "UW", "ʉ": "UW", "ɯ": "UW", "o": "OW",
    "p": "P", "b": "B", "t": "T", "d": "D", "k": "K", "ɡ": "G", "g": "G", "q": "K",
    "f": "F", "v": "V", "θ": "TH", "ð": "DH", "s": "S", "z": "Z", "ʃ": "SH", "ɕ": "SH",
    "ʂ": "SH", "ʒ": "ZH", "ʐ": "ZH", "ʑ": "ZH", "h": "HH", "ɦ": "HH", "x": "HH", "χ": "HH",
    "ç": "HH", "ħ": "HH", "m": "M", "ɱ": "M", "n": "N", "ɲ": "N", "ɳ": "N", "ŋ": "NG",
    "l": "L", "ɫ": "L", "ʎ": "L", "ɭ": "L", "ɬ": "L", "ɹ": "R", "r": "R", "ɾ": "R",
    "ʁ": "R", "ɻ": "R", "ʀ": "R", "ɽ": "R", "w": "W", "ʋ": "W", "β": "W", "ʍ": "W",
    "j": "Y", "c": "K", "ɟ": "G", "ʔ": "", "ʲ": "", "ʰ": "", "ʷ": "", "̃": "", "̩": "",
    "ɣ": "G", "ʝ": "Y", "ɸ": "F",
}  # fmt: skip
_DROP = "ˈˌːˑ‍-'̯̪̝̞̠̟ˠ˞"
_KEYS = sorted(_IPA, key=len, reverse=True)


class PhonemeError(ValueError):
    """espeak-ng failed or said something this module cannot fold into classes."""


def fold(token: str) -> list[str]:
    """One espeak IPA phoneme token -> broad classes (unknown symbols are skipped)."""
    t = "".join(ch for ch in token if ch not in _DROP)
    out: list[str] = []
    i = 0
    while i < len(t):
        for k in _KEYS:
            if t.startswith(k, i):
                out += _IPA[k].split()
                i += len(k)
                break
        else:
            i += 1  # a symbol we do not know (rare diacritics): skip it
    return out


def ipa(text: str, voice: str) -> str:
    """espeak-ng's IPA for text as `voice` says it (phonemes joined by "_", words by spaces)."""
    try:
        r = subprocess.run(
            ["espeak-ng", "-q", "--ipa", "--sep=_", "-v", voice, text],
            capture_output=True, check=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as e:
        raise PhonemeError(f"espeak-ng -v {voice}: {e}") from None
    # language switches such as "(en)" ... "(hi)" carry no sound
    return re.sub(r"\([^)]*\)", " ", r.stdout.decode("utf-8", "replace"))


@functools.lru_cache(maxsize=200000)
def phonemize(text: str, voice: str) -> tuple[str, ...]:
    """The broad classes of text as espeak-ng's `voice` says it (language switches dropped)."""
    out: list[str] = []
    for word in ipa(text, voice).split():
        for tok in word.split("_"):
            out += fold(tok)
    return tuple(out)


def ids(classes) -> list[int]:
    return [INDEX[c] for c in classes]


#: Weak forms espeak-ng uses inside sentences but not for a word said alone.
WEAK_FORMS = {
    "a": [("AH",)],
    "the": [("DH", "AH"), ("DH", "IY")],
    "to": [("T", "AH"), ("T", "UH")],
    "for": [("F", "ER"), ("F", "AH")],
    "and": [("AH", "N", "D"), ("AH", "N")],
    "of": [("AH", "V")],
    "at": [("AH", "T")],
    "it": [("IH", "T")],
}


@functools.lru_cache(maxsize=20000)
def pronunciations(word: str, voices: tuple[str, ...] = ("en-us", "en-gb")) -> list[tuple]:
    """Distinct class sequences for one word: said alone by each voice, plus weak forms."""
    out: list[tuple] = []
    for v in voices:
        p = phonemize(word, v)
        if p and p not in out:
            out.append(p)
    for p in WEAK_FORMS.get(word, []):
        if p not in out:
            out.append(p)
    if not out:
        raise PhonemeError(f"espeak-ng gives no phonemes for {word!r}")
    return out
