"""`voicenode features FILE.wav`: the front end's feature bytes of a recording.

By default the numpy reference computes them; with `--sim` the firmware itself does, on the
MicroPython Unix port. Both print the same text: one line per 10 ms step, N_MELS integers
0..255 separated by spaces.
"""


def add_arguments(parser):
    parser.add_argument("file", help="a WAV file (any rate/width; stereo is mixed down)")
    parser.add_argument(
        "--sim",
        action="store_true",
        help="run the firmware's front end on the MicroPython Unix port instead of the reference",
    )
    parser.add_argument("-o", "--output", metavar="OUT.npy", help="save the matrix (uint8) as .npy")
    parser.add_argument("--png", metavar="OUT.png", help="draw the features as a picture")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print the matrix")
    parser.add_argument(
        "--chunk",
        type=int,
        default=160,
        help="with --sim: samples per Frontend.process() call (default 160)",
    )


def draw_png(feats, path, title=""):
    """Save a spectrogram-like picture of a (steps, N_MELS) uint8 matrix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = feats.shape[0]
    fig, ax = plt.subplots(figsize=(max(4.0, min(20.0, steps / 40)), 3.2), dpi=100)
    im = ax.imshow(
        feats.T,
        origin="lower",
        aspect="auto",
        cmap="magma",
        vmin=0,
        vmax=255,
        extent=(0, steps * 0.01, 0, feats.shape[1]) if steps else None,
    )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel band")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="feature (0..255)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run(args):
    import sys

    import numpy as np

    from voicenode_tools.audio import AudioError, load_16k
    from voicenode_tools.cli import CommandError
    from voicenode_tools.reference import frontend

    try:
        pcm = load_16k(args.file)
    except AudioError as e:
        raise CommandError(str(e)) from None
    if args.chunk < 1:
        raise CommandError("--chunk must be at least 1")
    if args.sim:
        try:
            feats = frontend.firmware_features(pcm, chunk=args.chunk)
        except RuntimeError as e:
            raise CommandError(str(e)) from None
    else:
        feats = frontend.features(pcm)
    if not args.quiet:
        sys.stdout.write(frontend.format_features(feats))
    if args.output:
        np.save(args.output, feats)
    if args.png:
        draw_png(feats, args.png, title=f"{args.file} ({'firmware' if args.sim else 'reference'})")
    if len(feats) == 0:
        print(f"notice: {args.file} is shorter than one window; no features", file=sys.stderr)
    return 0
