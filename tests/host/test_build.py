"""What `deploy` takes from the firmware tree."""

from voicenode_tools.device.build import source_files


def test_secrets_and_caches_are_never_deployed(tmp_path):
    (tmp_path / "voicenode").mkdir()
    (tmp_path / "voicenode" / "x.py").write_text("X = 1\n")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.vnm").write_bytes(b"VNM")
    (tmp_path / "secrets.json").write_text('{"wifi": {"ssid": "home", "password": "hunter2"}}')
    (tmp_path / "secrets.example.json").write_text("{}")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"")
    (tmp_path / "boot.py").write_text("")
    py, data = source_files(tmp_path)
    assert py == ["voicenode/x.py"]
    assert data == ["models/a.vnm"]
