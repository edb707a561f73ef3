"""Text for long negative speech: sentences read aloud by the synthesizers.

Sources are local and stable: the licence texts every Debian system has in
/usr/share/common-licenses (package base-files), plus everyday sentences kept here. Training
and validation read disjoint sources.
"""

from __future__ import annotations

import re
from pathlib import Path

LICENSES = Path("/usr/share/common-licenses")
TRAIN_FILES = ("GPL-3", "Apache-2.0", "LGPL-2.1", "Artistic", "GFDL-1.3")
VAL_FILES = ("MPL-2.0", "GPL-2", "CC0-1.0")

EVERYDAY = """
Could you turn the lights off in the kitchen please.
I think it is going to rain this afternoon, take an umbrella.
What time does the train to the city leave tomorrow morning.
Put the kettle on, we have guests coming over at five.
The children are playing in the garden with the neighbour's dog.
Remind me to call the dentist after lunch.
Did you remember to buy milk and bread on the way home.
Play some quiet music while I finish reading this chapter.
The meeting has been moved to Thursday at half past two.
My phone battery is almost empty, where is the charger.
Let's order pizza tonight, I am too tired to cook.
The heating is broken again, we should call someone to fix it.
How far is it to the nearest petrol station from here.
She told me the film was much better than the book.
We need to leave in ten minutes or we will miss the bus.
Can you hear that noise coming from the garage.
The weather forecast says it will be sunny all weekend.
Please close the window, it is getting cold in here.
I have never seen so many birds in the park before.
Turn the volume down a little, the baby is asleep.
Harvey and Travis went to the harvest festival last autumn.
Alex said the service was excellent at the new restaurant.
Set a timer for twenty minutes for the pasta.
The garage door opener needs new batteries.
Jars of jam and jelly were lined up on the shelf.
Hey, have you seen my keys anywhere.
A lexicon is a list of words and their meanings.
Elections are held every four years in this country.
Is there any coffee left or did you finish it.
The library closes early on Sundays.
Could you switch on the fan in the bedroom.
He parked the car behind the old service station.
Thank you very much, that was really kind of you.
Let me know when the washing machine has finished.
It is a quarter to seven and dinner is almost ready.
The package should arrive sometime before noon.
Nobody answered the door when I knocked.
We walked along the river until the sun went down.
Do you want tea or coffee with your breakfast.
The lecture on electronics starts at nine.
"""


def sentences(text: str, min_words: int = 3, max_words: int = 22) -> list[str]:
    """Readable sentences from running text (letters and simple punctuation only)."""
    text = re.sub(r"\s+", " ", text)
    out = []
    for s in re.split(r"(?<=[.;:!?])\s+", text):
        s = re.sub(r"[^A-Za-z ,.'-]", " ", s)
        s = re.sub(r"\s+", " ", s).strip(" ,.-'")
        n = len(s.split())
        if min_words <= n <= max_words and sum(c.isupper() for c in s) < len(s) / 3:
            out.append(s)
    return out


def corpus(split: str, exclude: str = "") -> list[str]:
    """Sentences for ``split`` ("train" or "val"), none containing the phrase ``exclude``."""
    files = TRAIN_FILES if split == "train" else VAL_FILES
    # The everyday sentences alternate between the splits.
    out = sentences(EVERYDAY)[0 if split == "train" else 1 :: 2]
    for name in files:
        p = LICENSES / name
        if p.exists():
            out += sentences(p.read_text(errors="replace"))
    ex = exclude.lower().strip()
    return [s for s in out if not ex or ex not in s.lower()]
