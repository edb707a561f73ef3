"""Front-end parameters. MUST MATCH TRAINING.

Every number here shapes the features the network was trained on. The host reference
(`voicenode_tools.reference.params`) loads this very file, and `tables.py` is generated from
it (`python -m voicenode_tools.reference.frontend --write-tables`). Change a value and you must
regenerate the tables and retrain every model; the model sidecar records FEATURES_VERSION so a
mismatched model is refused.
"""

try:
    from micropython import const
except ImportError:  # CPython (host reference)

    def const(x):
        return x


# Bump when anything below (or the arithmetic in frontend.py) changes.
FEATURES_VERSION = const(2)  # 2: peak of the raw window sets the shift (was: windowed)

SAMPLE_RATE = const(16000)
WINDOW = const(480)  # samples per analysis window (30 ms)
STEP = const(160)  # samples between windows (10 ms)
FFT_SIZE = const(512)  # real FFT, computed as a 256-point complex FFT
N_MELS = const(40)  # output bands
MEL_LO_HZ = const(125)
MEL_HI_HZ = const(7500)

# Fixed point.
WINDOW_BITS = const(15)  # Hann window in Q15
TWIDDLE_BITS = const(15)  # FFT twiddles in Q15
MEL_WEIGHT_BITS = const(7)  # triangle weights in Q7 (the two weights of a bin sum to 128)
NORM_BIT = const(11)  # each frame is shifted so its peak windowed sample has this top bit
LOG_FRAC_BITS = const(6)  # log2(power) in Q6: one unit = 3.01/64 dB
LOG_TABLE_BITS = const(7)  # log2 mantissa table: 128 entries
LOG_OFFSET = const(384)  # added to the log so that a full-scale frame stays positive

# Noise floor: a per-band minimum tracker in the log domain, kept in Q(LOG_FRAC_BITS + 8).
NOISE_RISE_SHIFT = const(9)  # floor rises with time constant 2**9 steps (about 5 s)
NOISE_FALL_SHIFT = const(3)  # and falls with 2**3 steps (80 ms)
NOISE_MIN = const(448)  # lowest floor (Q6 log2 power; white noise of about 1.5 LSB rms):
# keeps digital silence and microphone self-noise from being amplified

# Output byte: clamp(OUT_OFFSET + ((log - floor) * OUT_GAIN >> 8), 0, 255).
OUT_GAIN = const(32)  # 256/32 = 8 log units per step: 0.38 dB per output step, 90 dB span
OUT_OFFSET = const(16)  # sounds a little below the floor stay visible
