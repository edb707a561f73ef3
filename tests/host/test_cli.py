import subprocess
import sys

from voicenode_tools import FIRMWARE_DIR, __version__
from voicenode_tools.cli import main


def test_version_flag(capsys):
    try:
        main(["--version"])
    except SystemExit as e:
        assert e.code == 0
    assert __version__ in capsys.readouterr().out


def test_console_script_installed():
    out = subprocess.run(
        [sys.executable, "-m", "voicenode_tools.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert "voicenode" in out.stdout


def test_firmware_dir_found():
    assert (FIRMWARE_DIR / "voicenode" / "__init__.py").is_file()


def test_module_entry_prints_one_line_errors(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "voicenode_tools.cli", "listen", str(tmp_path / "no.wav")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert out.stderr.startswith("voicenode listen: error:") and "Traceback" not in out.stderr
