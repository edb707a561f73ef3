"""Board definitions: load, validate, generate `board.py`, list the files a board needs.

One board is one folder `boards/<NAME>/` with `board.json` (metadata, pinout, microphone
format, codec, where the pinout comes from) and a generated `board.py` of pin constants: the
only place pin numbers appear in the firmware. `voicenode boards --generate` writes
`board.py` from `board.json`; a test checks that the committed files are not stale.

    >>> from voicenode_tools import boards
    >>> b = boards.load("ESP32_S3_DEVKITC_INMP441")
    >>> b.device_files()["board.py"]
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

from . import BOARDS_DIR, FIRMWARE_DIR

#: The reference board: an ESP32-S3-DevKitC-1 with an INMP441 breakout.
DEFAULT = "ESP32_S3_DEVKITC_INMP441"

SCHEMA = 1

#: GPIO numbers that exist on the ESP32-S3 (22-25 do not).
S3_GPIOS = frozenset(list(range(0, 22)) + list(range(26, 49)))
#: Always wired to the SPI flash / PSRAM inside the module.
FLASH_PINS = frozenset(range(26, 33))
#: Also taken on modules with octal (8-line) flash or PSRAM.
OCTAL_PINS = frozenset(range(33, 38))
#: Sampled at reset to choose the boot mode, flash voltage and JTAG source.
STRAPPING_PINS = {
    0: "boot mode",
    3: "JTAG source",
    45: "flash voltage (VDD_SPI)",
    46: "boot mode / ROM log",
}
#: Usable, but taken by the console on most boards.
CONSOLE_PINS = {19: "USB D-", 20: "USB D+", 43: "UART0 TX", 44: "UART0 RX"}

MIC_FORMATS = ("philips", "left_justified", "pdm")
MIC_INTERFACES = ("i2s", "codec", "pdm")
LED_TYPES = ("gpio", "ws2812")
#: Codec chips the firmware has a driver for: chip -> driver module under voicenode/hal/codecs.
CODEC_DRIVERS = {"ES7210": "es7210", "ES8311": "es8311"}
#: Codecs that cannot make their clock from BCLK and need an MCLK pin.
CODEC_NEEDS_MCLK = {"ES7210"}

_GENERATED_HEADER = (
    "# Generated from boards/{name}/board.json by `voicenode boards --generate`: do not edit.\n"
    "# The only place pin numbers appear in the firmware; only voicenode.hal imports it.\n"
)


class BoardError(Exception):
    """A board that does not exist or whose definition is invalid."""


class UnsupportedBoardError(BoardError):
    """A board that is defined but that the firmware cannot serve (the reason says why)."""


@dataclass
class Board:
    """One board definition, as read from `boards/<NAME>/board.json`."""

    name: str
    path: Path
    data: dict = field(repr=False)

    # -- properties -----------------------------------------------------------------------
    @property
    def supported(self) -> bool:
        return bool(self.data.get("supported", False))

    @property
    def unsupported_reason(self) -> str | None:
        return None if self.supported else self.data.get("unsupported_reason") or "no reason given"

    @property
    def mic(self) -> dict:
        return self.data["microphone"]

    @property
    def codec(self) -> dict | None:
        return self.data.get("codec")

    @property
    def board_py(self) -> Path:
        return self.path / "board.py"

    def require_supported(self) -> None:
        """Raise `UnsupportedBoardError` with the reason when the firmware cannot serve it."""
        if not self.supported:
            raise UnsupportedBoardError(
                f"board {self.name} is not supported: {self.unsupported_reason}"
            )

    # -- pins -----------------------------------------------------------------------------
    def pins(self) -> list[tuple[str, int]]:
        """Every GPIO the definition names, as (role, number), in a stable order."""
        out: list[tuple[str, int]] = []
        for role, num in self.mic.get("pins", {}).items():
            if num is not None:
                out.append((f"microphone.{role}", num))
        codec = self.codec
        if codec:
            for role in ("scl", "sda"):
                out.append((f"codec.i2c.{role}", codec["i2c"][role]))
            mclk = codec.get("mclk") or {}
            if mclk.get("pin") is not None and mclk["pin"] != self.mic["pins"].get("mck"):
                out.append(("codec.mclk", mclk["pin"]))
        led = self.data.get("led")
        if led:
            out.append(("led", led["pin"]))
        for b in self.data.get("buttons", []):
            out.append((f"button.{b['name']}", b["pin"]))
        mute = self.data.get("mute")
        if mute:
            out.append(("mute", mute["pin"]))
        for role, num in sorted((self.data.get("board_pins") or {}).items()):
            out.append((f"board.{role}", num))
        return out

    # -- validation -----------------------------------------------------------------------
    def problems(self) -> tuple[list[str], list[str]]:
        """Validate the definition. Returns (errors, warnings); errors make it unusable."""
        errors: list[str] = []
        warnings: list[str] = []
        d = self.data
        if d.get("schema") != SCHEMA:
            errors.append(f"schema must be {SCHEMA}")
        if d.get("name") != self.name:
            errors.append(f"name {d.get('name')!r} differs from the folder name {self.name!r}")
        if d.get("mcu") != "esp32s3":
            errors.append(f"mcu must be 'esp32s3', not {d.get('mcu')!r}")
        for key in ("description", "microphone", "module", "source"):
            if not d.get(key):
                errors.append(f"missing {key!r}")
        if errors:
            return errors, warnings
        src = d["source"]
        if not isinstance(src, list) or not all(
            isinstance(s, str) and s.startswith("http") for s in src
        ):
            errors.append("source must be a list of URLs (each may be followed by a note)")
        if not self.supported and not d.get("unsupported_reason"):
            errors.append("an unsupported board must say why (unsupported_reason)")

        psram = d["module"].get("psram")
        flash = d["module"].get("flash")
        if psram not in ("none", "quad", "octal") or flash not in ("quad", "octal"):
            errors.append("module.psram must be none/quad/octal and module.flash quad/octal")
        octal = "octal" in (psram, flash)

        seen: dict[int, str] = {}
        for role, num in self.pins():
            if not isinstance(num, int) or num not in S3_GPIOS:
                errors.append(f"{role}: GPIO{num} does not exist on the ESP32-S3")
                continue
            if num in seen:
                errors.append(f"{role}: GPIO{num} is already used by {seen[num]}")
            seen[num] = role
            if num in FLASH_PINS:
                errors.append(f"{role}: GPIO{num} is wired to the module's SPI flash/PSRAM")
            elif octal and num in OCTAL_PINS:
                errors.append(
                    f"{role}: GPIO{num} is taken by the octal flash/PSRAM of {d['module']['name']}"
                )
            if num in STRAPPING_PINS:
                warnings.append(
                    f"{role}: GPIO{num} is a strapping pin ({STRAPPING_PINS[num]}): keep it free at reset"
                )
            if num in CONSOLE_PINS and not role.startswith("board."):
                warnings.append(f"{role}: GPIO{num} is also {CONSOLE_PINS[num]}")

        errors += self._mic_problems()
        errors += self._device_problems()
        return errors, warnings

    def _mic_problems(self) -> list[str]:
        m = self.mic
        errs = []
        fmt, iface = m.get("format"), m.get("interface")
        if fmt not in MIC_FORMATS:
            errs.append(f"microphone.format must be one of {MIC_FORMATS}")
        if iface not in MIC_INTERFACES:
            errs.append(f"microphone.interface must be one of {MIC_INTERFACES}")
        if (fmt == "pdm") != (iface == "pdm"):
            errs.append("microphone: format 'pdm' goes with interface 'pdm'")
        if self.supported:
            if iface == "pdm":
                errs.append("a PDM microphone cannot be supported: machine.I2S has no PDM mode")
            if fmt == "left_justified":
                errs.append(
                    "microphone.format left_justified: MicroPython's ESP32 I2S receives Philips framing "
                    "only, which would lose the MSB; set the codec to Philips or mark the board unsupported"
                )
        slot, sig = m.get("slot_bits"), m.get("significant_bits")
        if slot not in (16, 32):
            errs.append("microphone.slot_bits must be 16 or 32")
        elif not isinstance(sig, int) or not 8 <= sig <= slot:
            errs.append("microphone.significant_bits must be 8..slot_bits")
        if self.supported and slot != 32:
            errs.append(
                "microphone.slot_bits must be 32: MicroPython's ESP32 I2S receives 32-bit slots"
            )
        delay, shift = m.get("bit_delay"), m.get("shift")
        if not isinstance(delay, int) or not 0 <= delay <= 2:
            errs.append("microphone.bit_delay must be 0..2")
        if isinstance(slot, int) and (not isinstance(shift, int) or not 0 <= shift <= slot - 8):
            errs.append("microphone.shift must be 0..slot_bits-8")
        elif isinstance(sig, int) and isinstance(slot, int) and self.supported and shift > slot - 8:
            errs.append("microphone.shift drops every significant bit")
        if m.get("channel") not in ("left", "right"):
            errs.append("microphone.channel must be left or right (set by the L/R pin)")
        if m.get("rate") != 16000:
            errs.append("microphone.rate must be 16000 (the front end's rate, must match training)")
        if m.get("i2s_id") not in (0, 1):
            errs.append("microphone.i2s_id must be 0 or 1 (the ESP32-S3 has I2S0 and I2S1)")
        if not isinstance(m.get("ibuf"), int) or m["ibuf"] < 4096:
            errs.append("microphone.ibuf must be an int >= 4096")
        pins = m.get("pins") or {}
        need = ("sck", "sd") if iface == "pdm" else ("sck", "ws", "sd")
        for role in need:
            if pins.get(role) is None:
                errs.append(f"microphone.pins.{role} is missing")
        if iface == "codec" and not self.codec:
            errs.append("microphone.interface 'codec' needs a codec section")
        return errs

    def _device_problems(self) -> list[str]:
        errs = []
        codec = self.codec
        if codec:
            chip = codec.get("chip")
            if self.supported and chip not in CODEC_DRIVERS:
                errs.append(f"codec {chip!r} has no driver (known: {', '.join(CODEC_DRIVERS)})")
            addr = codec.get("address")
            if not isinstance(addr, int) or not 0x08 <= addr <= 0x77:
                errs.append("codec.address must be a 7-bit I2C address")
            i2c = codec.get("i2c") or {}
            if i2c.get("id") not in (0, 1) or not isinstance(i2c.get("freq"), int):
                errs.append("codec.i2c needs id 0/1 and freq")
            mclk = codec.get("mclk")
            if chip in CODEC_NEEDS_MCLK and not mclk:
                errs.append(f"codec {chip} needs MCLK (codec.mclk)")
            if not mclk and self.mic["pins"].get("mck") is not None:
                errs.append("microphone.pins.mck is set but codec.mclk is not")
            if mclk and mclk.get("pin") != self.mic["pins"].get("mck"):
                errs.append("codec.mclk.pin must equal microphone.pins.mck")
            if mclk and mclk.get("multiple") not in (128, 256, 384, 512):
                errs.append("codec.mclk.multiple must be 128, 256, 384 or 512")
        led = self.data.get("led")
        if led and led.get("type") not in LED_TYPES:
            errs.append(f"led.type must be one of {LED_TYPES}")
        for b in self.data.get("buttons", []):
            if not {"name", "pin", "active_low"} <= set(b):
                errs.append("each button needs name, pin, active_low")
        mute = self.data.get("mute")
        if mute and "active_low" not in mute:
            errs.append("mute needs active_low")
        for item in [mute, *self.data.get("buttons", [])]:
            if item and item.get("pull") not in (None, "up", "down"):
                errs.append("pull must be up, down or null")
        return errs

    def check(self) -> list[str]:
        """Validate; raise `BoardError` listing every error. Returns the warnings."""
        errors, warnings = self.problems()
        if errors:
            raise BoardError(f"board {self.name}: " + "; ".join(errors))
        return warnings

    # -- generation -----------------------------------------------------------------------
    def generate_board_py(self) -> str:
        """The text of `board.py`: pin constants for the firmware, generated from board.json."""
        d, m = self.data, self.mic
        pins = m["pins"]
        lines = [_GENERATED_HEADER.format(name=self.name), "from micropython import const", ""]

        def const_(name, value):
            if value is None:
                lines.append(f"{name} = None")
            elif isinstance(value, bool):
                lines.append(f"{name} = {value!r}")
            elif isinstance(value, int):
                lines.append(f"{name} = const({value})")
            else:
                lines.append(f"{name} = {value!r}")

        const_("NAME", self.name)
        const_("SUPPORTED", self.supported)
        const_("UNSUPPORTED_REASON", self.unsupported_reason)
        lines.append("")
        lines.append(
            "# Microphone: machine.I2S receive, and how to turn a slot into an int16 sample."
        )
        const_("MIC_TYPE", m["type"])
        const_("MIC_INTERFACE", m["interface"])
        const_("MIC_I2S_ID", m["i2s_id"])
        const_("MIC_SCK", pins.get("sck"))
        const_("MIC_WS", pins.get("ws"))
        const_("MIC_SD", pins.get("sd"))
        const_("MIC_MCK", pins.get("mck"))
        const_("MIC_RATE", m["rate"])
        const_("MIC_IBUF", m["ibuf"])
        const_("MIC_SLOT_BITS", m["slot_bits"])
        const_("MIC_SIGNIFICANT_BITS", m["significant_bits"])
        const_("MIC_BIT_DELAY", m["bit_delay"])
        const_("MIC_SHIFT", m["shift"])
        const_("MIC_CHANNEL", m["channel"])
        lines.append("")
        codec = self.codec
        lines.append("# Codec / ADC set up over I2C before the microphone delivers samples.")
        const_("CODEC", codec["chip"] if codec else None)
        if codec:
            mclk = codec.get("mclk") or {}
            const_("CODEC_ADDR", codec["address"])
            const_("CODEC_I2C_ID", codec["i2c"]["id"])
            const_("CODEC_SCL", codec["i2c"]["scl"])
            const_("CODEC_SDA", codec["i2c"]["sda"])
            const_("CODEC_I2C_FREQ", codec["i2c"]["freq"])
            const_("CODEC_MCLK_MULTIPLE", mclk.get("multiple"))
            const_("CODEC_GAIN_DB", codec.get("gain_db"))
            lines.append(f"CODEC_MICS = {tuple(codec.get('mics', (1,)))!r}")
        lines.append("")
        led = d.get("led")
        lines.append("# Status LED: 'gpio' or 'ws2812'.")
        const_("LED_TYPE", led["type"] if led else None)
        const_("LED_PIN", led["pin"] if led else None)
        const_("LED_ACTIVE_LOW", bool(led and led.get("active_low")))
        lines.append("")
        mute = d.get("mute")
        lines.append("# Mute input (a switch or the board's mute button).")
        const_("MUTE_PIN", mute["pin"] if mute else None)
        const_("MUTE_ACTIVE_LOW", bool(mute and mute.get("active_low")))
        const_("MUTE_PULL", mute.get("pull") if mute else None)
        lines.append("")
        lines.append("# Buttons: (name, pin, active_low, pull).")
        buttons = tuple(
            (b["name"], b["pin"], bool(b["active_low"]), b.get("pull"))
            for b in d.get("buttons", [])
        )
        lines.append(f"BUTTONS = {buttons!r}")
        return "\n".join(lines) + "\n"

    def board_py_is_current(self) -> bool:
        return self.board_py.is_file() and self.board_py.read_text() == self.generate_board_py()

    def write_board_py(self) -> Path:
        self.board_py.write_text(self.generate_board_py())
        return self.board_py

    # -- deploy ---------------------------------------------------------------------------
    def device_files(self) -> dict[str, Path]:
        """What deploy must copy for this board: {path on the device, relative to the app
        directory: local path}. The board module is `board.py` at the top of the app dir; a
        board with a codec adds its driver, the I2C adapter and Adafruit's I2CDevice.

        Raises:
            UnsupportedBoardError: the firmware cannot serve this board.
            BoardError: board.py is stale or missing, or a needed package is not installed.
        """
        self.require_supported()
        if not self.board_py_is_current():
            raise BoardError(
                f"boards/{self.name}/board.py is missing or stale: run `voicenode boards --generate`"
            )
        files = {"board.py": self.board_py}
        if self.codec:
            codecs = FIRMWARE_DIR / "voicenode" / "hal" / "codecs"
            driver = CODEC_DRIVERS[self.codec["chip"]]
            for name in ("__init__.py", "bus.py", f"{driver}.py"):
                files[f"voicenode/hal/codecs/{name}"] = codecs / name
            pkg = busdevice_dir()
            for name in ("__init__.py", "i2c_device.py"):
                files[f"adafruit_bus_device/{name}"] = pkg / name
        return files


def busdevice_dir() -> Path:
    """Where the installed `adafruit_bus_device` package lives (it runs on the node as is)."""
    spec = importlib.util.find_spec("adafruit_bus_device")
    if spec is None or not spec.submodule_search_locations:
        raise BoardError(
            "adafruit_bus_device is not installed: "
            "pip install --no-deps adafruit-circuitpython-busdevice (scripts/setup.sh does it)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def names() -> list[str]:
    """The names of every defined board, sorted."""
    return sorted(p.parent.name for p in BOARDS_DIR.glob("*/board.json"))


def read(name: str) -> Board:
    """Read a definition whether or not the firmware supports it (for listing and checking)."""
    path = BOARDS_DIR / name
    js = path / "board.json"
    if not js.is_file():
        raise BoardError(f"no board named {name!r}; known boards: {', '.join(names())}")
    try:
        data = json.loads(js.read_text())
    except json.JSONDecodeError as e:
        raise BoardError(f"boards/{name}/board.json: {e}") from e
    return Board(name=name, path=path, data=data)


def load(name: str | None = None) -> Board:
    """Load a supported, valid board (the default one when `name` is None).

    Raises:
        UnsupportedBoardError: defined, but the firmware cannot serve it (message says why).
        BoardError: unknown name or invalid definition.
    """
    board = read(name or DEFAULT)
    board.require_supported()
    board.check()
    return board


def all_boards() -> list[Board]:
    return [read(n) for n in names()]


# -- wiring picture ----------------------------------------------------------------------------
_WIRE_COLORS = {
    "3V3": "#d62728",
    "GND": "#222222",
    "sck": "#1f77b4",
    "ws": "#2ca02c",
    "sd": "#ff7f0e",
}
_ROLE_NAMES = {"sck": "bit clock", "ws": "word select", "sd": "data"}


def wiring_svg(board: Board) -> str:
    """An SVG wiring diagram of the board and its microphone breakout, from board.json.

    Deterministic text (no timestamps), so a test can compare the committed picture with a
    fresh generation.

    Raises:
        BoardError: the board has no external breakout to wire (`microphone.breakout`).
    """
    from xml.sax.saxutils import escape

    m = board.mic
    breakout = m.get("breakout")
    if not breakout:
        raise BoardError(f"board {board.name} has no microphone breakout to wire (it is built in)")
    rows = []  # (esp label, mic label, color, note)
    for mic_pin, target in breakout.items():
        if target in ("3V3", "GND"):
            rows.append(
                (target, mic_pin, _WIRE_COLORS[target], "power" if target == "3V3" else "ground")
            )
        else:
            gpio = m["pins"][target]
            rows.append(
                (f"GPIO{gpio}", mic_pin, _WIRE_COLORS[target], _ROLE_NAMES.get(target, target))
            )
    extras = []
    mute = board.data.get("mute")
    if mute:
        extras.append((f"GPIO{mute['pin']}", "mute switch to GND (closed = muted)"))
    led = board.data.get("led")
    if led:
        extras.append((f"GPIO{led['pin']}", f"on-board {led['type'].upper()} status LED"))
    for b in board.data.get("buttons", []):
        extras.append((f"GPIO{b['pin']}", f"{b['name']} button (on the board)"))

    row_h, top = 34, 86
    n = len(rows)
    box_h = row_h * n + 40
    height = top + box_h + 30 + 22 * len(extras) + 40
    width = 760
    esp_x, esp_w = 40, 250
    mic_x, mic_w = 520, 200
    module = board.data["module"]["name"]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="14">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{width // 2}" y="30" text-anchor="middle" font-size="18" font-weight="bold">'
        f"{escape(board.name)}</text>",
        f'<text x="{width // 2}" y="52" text-anchor="middle" fill="#555555">'
        f"{escape(m['type'])}, {escape(m['format'])} I2S, {m['significant_bits']}-bit data in "
        f"{m['slot_bits']}-bit slots, {escape(m['channel'])} slot</text>",
        f'<rect x="{esp_x}" y="{top - 20}" width="{esp_w}" height="{box_h}" rx="8" '
        'fill="#e8f0fb" stroke="#1f4e8c" stroke-width="2"/>',
        f'<text x="{esp_x + 12}" y="{top - 2}" font-weight="bold">'
        f"{escape(board.data.get('label', 'ESP32-S3 board'))}</text>",
        f'<text x="{esp_x + 12}" y="{top + 16}" fill="#555555" font-size="12">{escape(module)}</text>',
        f'<rect x="{mic_x}" y="{top - 20}" width="{mic_w}" height="{box_h}" rx="8" '
        'fill="#fbf1e6" stroke="#8c4e1f" stroke-width="2"/>',
        f'<text x="{mic_x + mic_w - 12}" y="{top - 2}" text-anchor="end" font-weight="bold">'
        f"{escape(m['type'])}</text>",
    ]
    for i, (esp, mic, color, note) in enumerate(rows):
        y = top + 30 + i * row_h
        x1, x2 = esp_x + esp_w, mic_x
        out += [
            f'<circle cx="{x1}" cy="{y}" r="5" fill="{color}"/>',
            f'<text x="{x1 - 12}" y="{y + 5}" text-anchor="end">{escape(esp)}</text>',
            f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{color}" stroke-width="3"/>',
            f'<text x="{(x1 + x2) // 2}" y="{y - 6}" text-anchor="middle" font-size="11" '
            f'fill="#555555">{escape(note)}</text>',
            f'<circle cx="{x2}" cy="{y}" r="5" fill="{color}"/>',
            f'<text x="{x2 + 12}" y="{y + 5}">{escape(mic)}</text>',
        ]
    y = top + box_h + 10
    if extras:
        out.append(f'<text x="{esp_x}" y="{y}" font-weight="bold">Also on the board</text>')
        for i, (pin, what) in enumerate(extras):
            out.append(
                f'<text x="{esp_x + 12}" y="{y + 22 * (i + 1)}">{escape(pin)}: {escape(what)}</text>'
            )
    out.append(
        f'<text x="{width // 2}" y="{height - 16}" text-anchor="middle" font-size="11" fill="#777777">'
        f"generated by `voicenode boards --wiring {escape(board.name)}` from "
        f"boards/{escape(board.name)}/board.json</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"
