"""`voicenode hil`: the hardware-in-the-loop suite and the soak, on a board or the virtual one.

voicenode hil run  [--port P] [--board B] [--junit OUT.xml] [--acoustic] [-k EXPR]
voicenode hil soak [--port P] --hours N [--out DIR] [--seed S]
"""

from __future__ import annotations

import sys
from pathlib import Path

from voicenode_tools import REPO_ROOT
from voicenode_tools.cli import CommandError

HIL_TESTS = REPO_ROOT / "tests" / "hil"


def add_arguments(parser):
    sub = parser.add_subparsers(dest="hil_command", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="run the HIL test suite (pytest tests/hil)")
    run.add_argument("--port", default="sim", help="serial port, auto, or sim (default)")
    run.add_argument("--board", default=None, help="board definition to deploy")
    run.add_argument("--junit", default=None, help="write JUnit XML here")
    run.add_argument("--acoustic", action="store_true", help="play clips into the microphone")
    run.add_argument("--no-deploy", action="store_true", help="use the app already on the board")
    run.add_argument("-k", dest="keyword", default=None, help="only tests matching EXPR")
    run.add_argument("-v", "--verbose", action="store_true", help="pytest's verbose output")
    soak = sub.add_parser("soak", help="stream hours of mixed audio, record heap and detections")
    soak.add_argument("--port", default="sim", help="serial port, auto, or sim (default)")
    soak.add_argument("--board", default=None, help="board definition to deploy")
    soak.add_argument("--hours", type=float, required=True, help="hours of audio")
    soak.add_argument("--out", default="hil-soak", help="directory for the reports")
    soak.add_argument("--seed", type=int, default=1, help="seed of the audio mix")
    soak.add_argument("--phrase", default=None, help="wake phrase (default: the shipped model's)")
    soak.add_argument("--no-deploy", action="store_true", help="use the app already on the board")
    soak.add_argument(
        "--window", type=int, default=None, help="lines in flight (default 8 sim, 1 real)"
    )


class _Tally:
    """A pytest plugin that counts outcomes and keeps failures' first lines."""

    def __init__(self):
        self.counts = {"passed": 0, "failed": 0, "error": 0}
        self.failures = []
        self.durations = 0.0

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or report.outcome != "passed":
            self.durations += report.duration
            if report.outcome == "passed" and report.when == "call":
                self.counts["passed"] += 1
            elif report.outcome == "failed":
                key = "failed" if report.when == "call" else "error"
                self.counts[key] += 1
                text = str(report.longrepr).strip().splitlines()
                msg = next(
                    (
                        ln.strip()[2:].strip()
                        for ln in reversed(text)
                        if ln.strip().startswith("E ")
                    ),
                    text[-1] if text else "",
                )
                self.failures.append((report.nodeid, msg))


def _run_suite(args) -> int:
    import pytest

    suite = "voicenode-hil-acoustic" if args.acoustic else "voicenode-hil"
    argv = [str(HIL_TESTS), "--port", args.port, "-p", "no:cacheprovider"]
    # voicenode_tools is imported already (this command): pytest cannot rewrite its asserts.
    argv += ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
    # xunit1: the suite's figures (latencies, heap) are JUnit properties of each test case.
    argv += ["-o", f"junit_suite_name={suite}", "-o", "junit_family=xunit1"]
    argv.append("-v" if args.verbose else "-q")
    if args.board:
        argv += ["--board", args.board]
    if args.acoustic:
        argv.append("--acoustic")
    if args.no_deploy:
        argv.append("--no-deploy")
    if args.keyword:
        argv += ["-k", args.keyword]
    if args.junit:
        argv += ["--junitxml", args.junit]
    tally = _Tally()
    code = pytest.main(argv, plugins=[tally])
    c = tally.counts
    print()
    print(
        f"voicenode hil ({'acoustic' if args.acoustic else 'injected'}) on {args.port}: "
        f"{c['passed']} passed, {c['failed']} failed, {c['error']} errors"
    )
    for nodeid, msg in tally.failures:
        print(f"  FAIL {nodeid.split('::')[-1]}: {msg}")
    if args.junit:
        print(f"  JUnit XML: {args.junit} (suite {suite})")
    return int(code)


def _run_soak(args) -> int:
    from voicenode_tools.device import ports
    from voicenode_tools.device.deploy import DEFAULT_BOARD, deploy
    from voicenode_tools.hil import check, clips, soak
    from voicenode_tools.hil.link import HilError, NodeLink

    phrase = args.phrase or clips.wake_phrase()
    if not phrase:
        raise CommandError("no wake phrase: no shipped model under models/, pass --phrase")
    board = None
    if args.port == "sim":
        # Fast mode: the virtual board runs the node as fast as it computes.
        board = ports.start_sim(realtime=False)
        path = board.port
    else:
        path = ports.resolve(args.port)
    problem = check.micropython(path, board)
    if problem:
        raise CommandError(problem)
    if not args.no_deploy:
        print(deploy(path, board=args.board or DEFAULT_BOARD).summary().splitlines()[0])
    problem = check.diagnose(path, board)
    if problem:
        raise CommandError(problem)
    seconds = args.hours * 3600
    window = args.window or (8 if board is not None else 1)
    last = [0.0]

    def progress(res):
        if res.audio_seconds - last[0] >= 600 or res.audio_seconds >= seconds:
            last[0] = res.audio_seconds
            h = res.heap[-1][1] if res.heap else 0
            print(
                f"  {res.audio_seconds / 3600:6.2f} h audio, heap_alloc {h}, "
                f"detections {len(res.detections)}",
                flush=True,
            )

    print(f"soak: {args.hours} h of mixed audio ('{phrase}') into {path}", flush=True)
    try:
        link = NodeLink(path, board, soft_reset=True)
    except HilError as e:
        raise CommandError(str(e)) from e
    try:
        res = soak.run(link, seconds, phrase, seed=args.seed, window=window, progress=progress)
    finally:
        link.close()
    files = soak.save(res, Path(args.out))
    print(res.summary())
    print("  files: " + ", ".join(str(p) for p in files.values()))
    return 0 if res.passed else 1


def run(args) -> int:
    if args.hil_command == "run":
        return _run_suite(args)
    if args.hil_command == "soak":
        if args.hours <= 0:
            raise CommandError("--hours must be positive")
        return _run_soak(args)
    raise CommandError(f"unknown action {args.hil_command}")


if __name__ == "__main__":
    sys.exit(run(None))
