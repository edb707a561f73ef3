"""numpy twins of the firmware's dsp/, nn/ and wake.py, giving the same integers."""
