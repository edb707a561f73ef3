"""The HIL pytest plugin: one suite for a real board and for the virtual board.

Registered for every pytest run through the `pytest11` entry point in pyproject.toml; it only
does work when a test asks for one of its fixtures.

Options:
    --port PORT|sim      the board: a serial port (/dev/ttyACM0, a0, auto) or `sim` (default)
    --board NAME         the board definition to deploy (boards/<NAME>/)
    --acoustic           play clips through the host's loudspeaker into the board's own
                         microphone (the virtual board: into its simulated microphone)
    --no-deploy          use the app already on the board (a real board deployed by hand)
    --models DIR         the models that app runs, for the host twin (default: shipped ones)
    --hil-soak SECONDS   audio seconds for the in-suite soak test (default 120)

Fixtures:
    hil_target     (session) the port, and the VirtualBoard behind it for `sim`
    hil_deployed   (session) the firmware deployed once (DeployReport)
    node           a NodeLink to the node after a soft reset: a clean node for each test
    node_events    callable: the node's event log (dicts, oldest first)
    node_status    callable: voicenode.status() on the node (heap, counters, uptime)
    inject         callable(pcm or Clip) -> Injection (acoustic with --acoustic)
    wake_phrase    the phrase of the shipped model (skips nothing: fails if none ships)
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("voicenode-hil", "voice node hardware-in-the-loop")
    group.addoption(
        "--port",
        action="store",
        default="sim",
        help="board for tests/hil: a serial port (/dev/ttyACM0, a0, auto) or sim (default)",
    )
    group.addoption(
        "--board", action="store", default=None, help="board definition to deploy (boards/NAME)"
    )
    group.addoption(
        "--acoustic",
        action="store_true",
        default=False,
        help="play clips through the loudspeaker into the board's microphone",
    )
    group.addoption(
        "--no-deploy", action="store_true", default=False, help="use the app already deployed"
    )
    group.addoption(
        "--models",
        action="store",
        default=None,
        help="folder of the models the board runs, for the host twin (default: the shipped ones)",
    )
    group.addoption(
        "--hil-soak",
        action="store",
        type=float,
        default=120.0,
        help="seconds of audio for the in-suite soak test",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "hil: a hardware-in-the-loop test (tests/hil)")


def pytest_sessionstart(session):
    models = session.config.getoption("--models", default=None)
    if models:
        from . import clips

        clips.MODELS_OVERRIDE = os.path.abspath(models)


def pytest_report_header(config):
    port = config.getoption("--port", default="sim")
    mode = "acoustic" if config.getoption("--acoustic", default=False) else "injected"
    return (
        f"voicenode hil: port={port} board={config.getoption('--board') or 'default'} mode={mode}"
    )


@dataclass
class Target:
    """The board under test.

    Attributes:
        spec: what --port said ("sim", "/dev/ttyACM0", ...).
        path: the serial device.
        board: the `VirtualBoard` for `sim`, else None.
        board_name: the board definition deployed.
        acoustic: clips go through a microphone, not the test input.
        mic: the virtual board's microphone feeder in acoustic mode.
    """

    spec: str
    path: str
    board: object = None
    board_name: str | None = None
    acoustic: bool = False
    mic: object = None
    flash_image: str | None = None

    @property
    def sim(self) -> bool:
        return self.board is not None

    def link(self, soft_reset: bool = False):
        from .link import NodeLink

        return NodeLink(self.path, self.board, soft_reset=soft_reset)


@pytest.fixture(scope="session")
def hil_target(request, tmp_path_factory):
    """The board: a real port, or a virtual board on a fresh flash image for `--port sim`."""
    from voicenode_tools.cli import CommandError

    from .link import HilError

    spec = request.config.getoption("--port")
    acoustic = request.config.getoption("--acoustic")
    board_name = request.config.getoption("--board")
    if spec == "sim":
        from voicenode_tools.sim.board import VirtualBoard

        img = tmp_path_factory.mktemp("hil-sim") / "flash.img"
        mic = None
        feeder = None
        if acoustic:
            from .acoustic import SimMicFeeder

            feeder = SimMicFeeder()
            mic = feeder.spec
        # Real time, as a board: the node's own loop (after a reset) listens at 1x. In
        # acoustic mode the feeder paces the microphone's stream itself.
        board = VirtualBoard(str(img), mic=mic, realtime=not acoustic)
        try:
            path = board.start()
        except Exception as e:
            pytest.fail(f"the virtual board did not start: {e}", pytrace=False)
        target = Target(spec, path, board, board_name, acoustic, feeder, str(img))
        yield target
        with contextlib.suppress(Exception):
            board.stop()
        if feeder is not None:
            feeder.close()
        return
    from voicenode_tools.device import ports

    try:
        path = ports.resolve(spec)
    except (CommandError, HilError) as e:
        pytest.fail(f"no board: {e}", pytrace=False)
    yield Target(spec, path, None, board_name, acoustic)


@pytest.fixture(scope="session")
def hil_deployed(request, hil_target):
    """Deploy the firmware once per session (checks MicroPython first, with a clear message)."""
    from voicenode_tools.cli import CommandError

    from . import check

    problems = check.micropython(hil_target.path, hil_target.board)
    if problems:
        pytest.fail(problems, pytrace=False)
    if request.config.getoption("--no-deploy"):
        return None
    from voicenode_tools.device.deploy import DEFAULT_BOARD, deploy

    try:
        report = deploy(hil_target.path, board=hil_target.board_name or DEFAULT_BOARD)
    except CommandError as e:
        pytest.fail(f"deploy to {hil_target.path} failed: {e}", pytrace=False)
    return report


@pytest.fixture
def node(hil_target, hil_deployed):
    """A link to the node after a soft reset (a clean heap and event log for each test).

    A virtual board that a previous test killed is started again first (on its flash), so
    one dead board fails one test, not the rest of the session.
    """
    if hil_target.sim and not hil_target.board.running:
        hil_target.path = hil_target.board.start()
    link = hil_target.link(soft_reset=True)
    yield link
    link.close()


@pytest.fixture
def node_events(node):
    """Callable: the node's kept events (oldest first)."""
    return node.events


@pytest.fixture
def node_status(node):
    """Callable: `voicenode.status()` on the node."""
    return node.status


@pytest.fixture
def inject(hil_target, node):
    """Callable(pcm or Clip, **kw) -> Injection: a clip into the node in place of the mic.

    With --acoustic the clip is played into the microphone instead (loudspeaker or the
    virtual board's simulated microphone) and the events are read from the console.
    """
    import numpy as np

    def _inject(clip, **kw):
        pcm = clip.pcm if hasattr(clip, "pcm") else np.asarray(clip, dtype=np.int16)
        if hil_target.acoustic:
            from .acoustic import play_and_listen

            return play_and_listen(hil_target, node, pcm, **kw)
        kw.setdefault("window", 8 if hil_target.sim else 1)
        return node.inject(pcm, **kw)

    return _inject


@pytest.fixture(scope="session")
def wake_phrase():
    """The wake phrase of the shipped model (fails, never skips, when no model ships)."""
    from .clips import shipped_models, wake_phrase

    models = shipped_models()
    if not models:
        pytest.fail(
            "no shipped wake-word model under models/ (*.vnm with its .json)", pytrace=False
        )
    phrase = wake_phrase()
    if not phrase:
        pytest.fail(f"the sidecar of {models[0].name} names no wake phrase", pytrace=False)
    return phrase


@pytest.fixture
def spare_board(hil_target, hil_deployed, tmp_path):
    """A second virtual board on a copy of the deployed flash (for tests that kill boards).

    Only for `--port sim`; on a real board the test that needs it fails with that reason.
    """
    if not hil_target.sim:
        pytest.fail("this test kills a virtual board: run it with --port sim", pytrace=False)
    from voicenode_tools.sim.board import VirtualBoard

    img = tmp_path / "flash.img"
    # The session board's flash is quiet between tests (littlefs writes are synchronous).
    shutil.copyfile(hil_target.flash_image, img)
    board = VirtualBoard(str(img), realtime=True)
    board.start()
    yield board
    with contextlib.suppress(Exception):
        board.stop()


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "no")
