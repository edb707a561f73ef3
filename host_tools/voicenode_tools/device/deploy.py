"""Atomic, incremental deploy of the firmware to a board.

On the device:

    /boot.py, /main.py      thin and stable (source), replaced by write-then-rename
    /app/<id>/              one complete app tree (.mpy), id = content hash of the tree
    /app/<id>/manifest.json {"id", "arch", "files": {path: hash}}, written last
    /app/current            names the active <id>

Steps, each safe to interrupt (a killed deploy leaves the old version booting, or the new one
once the last step has run, never a mix):

1. survey: arch, active id, its manifest, the hashes of /boot.py and /main.py;
2. clean: remove staging dirs and versions other than the active one (and a complete copy of
   the target, reused);
3. stage into /app/.stage-<id>/: files whose hash the active version has are copied on the
   device, the rest are uploaded (base64 in raw-paste batches);
4. verify: the device hashes every staged file; manifest.json is written last;
5. rename /app/.stage-<id> to /app/<id> (atomic);
6. replace /boot.py and /main.py if they differ (write .tmp, rename);
7. switch: write /app/current.tmp, rename it over /app/current (atomic on littlefs).

The previous version stays on the flash until the next deploy removes it.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from voicenode_tools import FIRMWARE_DIR
from voicenode_tools.cli import CommandError

from . import build as build_mod
from . import ports, transport

DEFAULT_BOARD = "ESP32_S3_DEVKITC_INMP441"
_BATCH_CHARS = 6000  # code sent per raw-paste exec
_CHUNK = 3072  # raw bytes per write call (4 KiB of base64)

# Helpers defined once per session in the raw REPL's globals.
_DEVICE_HELPERS = r"""
import os, sys, json, hashlib, binascii
def _rd(p):
    try:
        with open(p) as f:
            return f.read()
    except OSError:
        return None
def _h(p):
    h = hashlib.sha256()
    b = bytearray(1024)
    m = memoryview(b)
    with open(p, 'rb') as f:
        while True:
            n = f.readinto(b)
            if not n:
                break
            h.update(m[:n])
    return binascii.hexlify(h.digest()).decode()[:16]
def _hq(p):
    try:
        return _h(p)
    except OSError:
        return None
def _active():
    for n in ('current', 'current.tmp'):
        i = _rd('/app/' + n)
        if i:
            i = i.strip()
            if i and '/' not in i and _rd('/app/' + i + '/manifest.json') is not None:
                return i, n
    return None, None
def _rm(p):
    try:
        st = os.stat(p)
    except OSError:
        return
    if st[0] & 0x4000:
        for e in list(os.ilistdir(p)):
            _rm(p + '/' + e[0])
        os.rmdir(p)
    else:
        os.remove(p)
def _mkd(p):
    try:
        os.mkdir(p)
    except OSError:
        pass
def _cp(a, b):
    buf = bytearray(1024)
    m = memoryview(buf)
    with open(a, 'rb') as fa:
        with open(b, 'wb') as fb:
            while True:
                n = fa.readinto(buf)
                if not n:
                    break
                fb.write(m[:n])
def _p(p, d, md):
    with open(p, md) as f:
        f.write(binascii.a2b_base64(d))
def _swap(t, d):
    try:
        os.rename(t, d)
    except OSError:
        os.remove(d)
        os.rename(t, d)
def _sync():
    if hasattr(os, 'sync'):
        os.sync()
"""

_SURVEY = r"""
_mkd('/app')
_a, _v = _active()
_m = None
if _a:
    try:
        _m = json.loads(_rd('/app/' + _a + '/manifest.json'))
    except ValueError:
        _m = None
print(json.dumps({'platform': sys.platform, 'mpy': getattr(sys.implementation, '_mpy', 0),
    'active': _a, 'via': _v, 'manifest': _m,
    'apps': [e[0] for e in os.ilistdir('/app')],
    'root': {'/boot.py': _hq('/boot.py'), '/main.py': _hq('/main.py')}}))
"""


@dataclass
class DeployReport:
    """What a deploy did."""

    port: str
    arch: str | None
    app_id: str
    previous_id: str | None
    uploaded: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    seconds: float = 0.0
    booted: bool | None = None  # the new version reported its boot event (None: no reset)
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.app_id != self.previous_id or bool(self.uploaded)

    def summary(self) -> str:
        lines = [
            f"deployed app {self.app_id} ({self.arch}) to {self.port}"
            + ("" if self.changed else " (already up to date)"),
            f"  uploaded {len(self.uploaded)} file(s), {self.bytes_uploaded} bytes"
            + (": " + ", ".join(self.uploaded) if self.uploaded else ""),
            f"  copied on the device {len(self.copied)} unchanged file(s)",
            f"  removed {len(self.removed)}"
            + (": " + ", ".join(self.removed) if self.removed else ""),
            f"  previous version: {self.previous_id or 'none'}",
            f"  time {self.seconds:.2f} s",
        ]
        if self.booted:
            lines.append("  the board rebooted and reports the new version")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def arch_of(survey: dict) -> str | None:
    """The mpy-cross -march name for the board from `sys.implementation._mpy`.

    Raises:
        CommandError: the board's .mpy version does not match mpy-cross's.
    """
    mpy = int(survey.get("mpy") or 0)
    if not mpy:
        raise CommandError("the board does not report sys.implementation._mpy: MicroPython too old")
    version, sub = mpy & 0xFF, (mpy >> 8) & 3
    out = build_mod.mpy_cross_version()  # "... mpy-cross emitting mpy v6.3"
    want = out.rsplit("v", 1)[-1]
    if want != f"{version}.{sub}":
        raise CommandError(
            f"the board runs .mpy v{version}.{sub} but mpy-cross emits v{want}: "
            "flash a MicroPython that matches the host's mpy-cross (see voicenode flash)"
        )
    code = (mpy >> 10) & 0x3F
    if code not in build_mod.ARCH_NAMES:
        raise CommandError(f"unknown native architecture code {code} on the board")
    return build_mod.ARCH_NAMES[code]


BOOT_WAIT = 5.0  # seconds to wait for the boot event after the final soft reset


def _wait_boot(t, app_id: str) -> bool:
    """Read the console after the soft reset until the node's boot event names `app_id`.

    Waiting also means the next command does not interrupt a board that is still booting.
    """
    from .monitor import parse_event

    deadline = time.monotonic() + BOOT_WAIT
    buf = b""
    t.serial.timeout = 0.1
    while time.monotonic() < deadline:
        buf += t.serial.read(512)
        *lines, buf = buf.split(b"\n")
        for raw in lines:
            ev = parse_event(raw.decode("utf-8", errors="replace"))
            if ev and ev.get("event") == "boot" and ev.get("app") == f"/app/{app_id}":
                return True
    return False


class _Session:
    """Batches device code and runs it, with the step hook used by the tests."""

    def __init__(self, t, path, on_step):
        self.t = t
        self.path = path
        self.on_step = on_step or (lambda step: None)
        self.pending: list[str] = []
        self.size = 0

    def run(self, code):
        self.flush()
        return transport.run(self.t, code, timeout=60)

    def run_json(self, code):
        self.flush()
        return transport.run_json(self.t, code, timeout=60)

    def add(self, line: str, step: str | None = None):
        self.pending.append(line)
        self.size += len(line)
        if self.size >= _BATCH_CHARS:
            self.flush()
        if step:
            self.on_step(step)

    def flush(self):
        if self.pending:
            code = "\n".join(self.pending)
            self.pending, self.size = [], 0
            transport.run(self.t, code, timeout=60)


def _upload(s: _Session, dest: str, data: bytes) -> None:
    if not data:
        s.add(f"_p({dest!r}, b'', 'wb')")
    for i in range(0, len(data), _CHUNK):
        b64 = base64.b64encode(data[i : i + _CHUNK]).decode()
        s.add(f"_p({dest!r}, {b64!r}, {'wb' if i == 0 else 'ab'!r})")


def _verify(s: _Session, base: str, hashes: dict[str, str]) -> list[str]:
    """Paths under `base` whose on-device hash differs from `hashes` (or that are missing)."""
    got = s.run_json(
        "print(json.dumps({p: _hq(%r + '/' + p) for p in %r}))" % (base, sorted(hashes))
    )
    return sorted(p for p, h in hashes.items() if got.get(p) != h)


def install(
    t,
    path: str,
    b: build_mod.Build,
    survey: dict,
    on_step: Callable[[str], None] | None = None,
) -> DeployReport:
    """Install build `b` on the board behind transport `t` (already surveyed)."""
    s = _Session(t, path, on_step)
    active = survey["active"]
    report = DeployReport(path, b.arch, b.app_id, active, notes=list(b.notes))
    target = f"/app/{b.app_id}"
    stage = f"/app/.stage-{b.app_id}"

    # A FAT crash between "remove current" and "rename current.tmp": finish that rename first,
    # so current.tmp can be rewritten below without ever leaving no bootable name.
    if survey["via"] == "current.tmp":
        s.run("_swap('/app/current.tmp', '/app/current')")
    s.on_step("surveyed")

    # 2. Clean: keep the active version and a possibly complete copy of the target.
    keep = {"current", active, b.app_id}
    for name in survey["apps"]:
        if name not in keep:
            s.add(f"_rm('/app/{name}')")
            report.removed.append(f"/app/{name}")
    s.flush()
    s.on_step("cleaned")

    replace_active = False  # the active version is damaged: replace it once a copy is ready
    if b.app_id in survey["apps"]:
        # Complete by construction (renamed from a verified stage); check it anyway.
        if _verify(s, target, b.hashes) or _verify(
            s, target, {"manifest.json": build_mod.short_hash(b.manifest())}
        ):
            if active == b.app_id:
                replace_active = True
                report.notes.append(f"the installed {target} was damaged: reinstalled")
            else:
                s.run(f"_rm({target!r})")
                report.removed.append(target)
            survey["apps"].remove(b.app_id)
    if b.app_id not in survey["apps"]:
        trusted = active and not replace_active  # never copy from a damaged version
        old = (survey.get("manifest") or {}).get("files", {}) if trusted else {}
        by_hash = {h: p for p, h in old.items()}
        s.run(f"_rm({stage!r})\n_mkd({stage!r})")
        made = set()
        for rel in b.files:
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in made:
                    made.add(d)
                    s.add(f"_mkd({stage + '/' + d!r})")
        for rel, data in b.files.items():
            h = b.hashes[rel]
            if h in by_hash:
                s.add(
                    f"_cp({f'/app/{active}/{by_hash[h]}'!r}, {stage + '/' + rel!r})", f"copy:{rel}"
                )
                report.copied.append(rel)
            else:
                _upload(s, f"{stage}/{rel}", data)
                s.on_step(f"upload:{rel}")
                report.uploaded.append(rel)
                report.bytes_uploaded += len(data)
        s.flush()
        s.on_step("staged")
        bad = _verify(s, stage, b.hashes)
        if bad:
            raise CommandError(
                f"the board on {path} holds different bytes than were sent for "
                f"{', '.join(bad[:5])}: the flash may be full or failing (deploy again)"
            )
        _upload(s, f"{stage}/manifest.json", b.manifest())
        s.add("_sync()")
        s.flush()
        s.on_step("verified")
        if replace_active:  # the only moment without a complete /app/<id>: unavoidable
            s.run(f"_rm({target!r})")
        s.run(f"os.rename({stage!r}, {target!r})\n_sync()")
        s.on_step("renamed")

    # 6. The thin root files, each replaced atomically if it differs.
    for dest, data in b.root.items():
        if survey["root"].get(dest) != build_mod.short_hash(data):
            _upload(s, dest + ".tmp", data)
            s.add(f"_swap({dest + '.tmp'!r}, {dest!r})\n_sync()")
            s.flush()
            report.uploaded.append(dest)
            report.bytes_uploaded += len(data)
            s.on_step(f"root:{dest}")

    # 7. Switch.
    if active != b.app_id or survey["via"] != "current":
        s.run(
            "with open('/app/current.tmp', 'w') as f:\n f.write(%r)\n"
            "_sync()\n_swap('/app/current.tmp', '/app/current')\n_sync()" % (b.app_id + "\n")
        )
        s.on_step("switched")
    return report


def deploy(
    port=None,
    board: str | None = DEFAULT_BOARD,
    arch: str | None = None,
    source: Path = FIRMWARE_DIR,
    reset: bool = True,
    on_step: Callable[[str], None] | None = None,
    models: Path | None = build_mod.MODELS_DIR,
) -> DeployReport:
    """Compile the firmware for the board on `port` and install it atomically.

    Args:
        port: a port path, `"auto"`/`None`, or `"sim"` (see `ports.resolve`).
        board: the board whose files are deployed (`voicenode_tools.boards`).
        arch: mpy-cross -march name; detected from the board if None.
        source: the firmware tree.
        reset: soft-reset the board afterwards so the new version runs.
        on_step: called with a step name between steps (tests interrupt deploys with it).
        models: the folder of models installed in the app's models/ (None: no models).

    Raises:
        CommandError: for every user-facing failure (no port, busy port, board gone...).
    """
    start = time.monotonic()
    path = ports.resolve(port)
    t = transport.connect(path)
    try:
        with transport.guard(path):
            transport.run(t, _DEVICE_HELPERS)
            survey = transport.run_json(t, _SURVEY)
            target_arch = arch or arch_of(survey)
            b = build_mod.build(target_arch, source, board, models)
            report = install(t, path, b, survey, on_step)
            if reset:
                t.exit_raw_repl()
                t.serial.write(b"\x04")  # soft reset: boot.py and main.py run the new version
                report.booted = _wait_boot(t, b.app_id)
                if not report.booted:
                    report.notes.append(
                        f"no boot event naming /app/{b.app_id} within {BOOT_WAIT:.0f} s of the "
                        "soft reset: check the console (voicenode monitor --reset)"
                    )
    finally:
        transport.close(t)
    report.seconds = time.monotonic() - start
    return report
