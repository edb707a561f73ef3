"""The virtual board's simulated `machine`: I2S microphone, pins, I2C, reset helpers.

Code runs on the board through the real mpremote; the host side checks what the board saw.
"""

import os
import socket
import subprocess
import sys
import threading
import time
import wave

import numpy as np
import pytest

from voicenode_tools.sim.board import VirtualBoard

MPREMOTE = [sys.executable, "-m", "mpremote"]
RATE = 16000


def mpremote(port, *args, timeout=30):
    out = subprocess.run([*MPREMOTE, "connect", port, *args], capture_output=True, timeout=timeout)
    assert out.returncode == 0, (out.stdout + out.stderr).decode(errors="replace")
    return out.stdout.decode()


def write_wav(path, pcm, rate=RATE, channels=1):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())


@pytest.fixture
def speech(tmp_path):
    """A 0.5 s mono clip with extreme values at the start (a WAV the test knows exactly)."""
    rng = np.random.default_rng(7)
    pcm = rng.integers(-32768, 32768, RATE // 2).astype(np.int16)
    pcm[:5] = [-32768, 32767, -1, 1, 0]
    path = tmp_path / "speech.wav"
    write_wav(path, pcm)
    return path, pcm


CAPTURE = """
import machine, binascii
i2s = machine.I2S(0, sck=machine.Pin(4), ws=machine.Pin(5), sd=machine.Pin(6),
                  mode=machine.I2S.RX, bits={bits}, format=machine.I2S.{fmt}, rate=16000,
                  ibuf=16000)
buf = bytearray({chunk})
for _ in range({reads}):
    n = i2s.readinto(buf)
    assert n == len(buf), n
    print(binascii.hexlify(buf).decode())
print('STATS', i2s.stats())
i2s.deinit()
"""


def capture(port, bits, fmt="MONO", chunk=1000, reads=10):
    out = mpremote(port, "exec", CAPTURE.format(bits=bits, fmt=fmt, chunk=chunk, reads=reads))
    lines = out.split()
    stats_at = lines.index("STATS")
    raw = b"".join(bytes.fromhex(h) for h in lines[:stats_at])
    stats = eval(" ".join(lines[stats_at + 1 :]))  # a dict literal printed by the board
    return raw, stats


@pytest.mark.parametrize("bits", [16, 32])
def test_i2s_delivers_the_wav_exactly_then_silence(tmp_path, speech, bits):
    path, pcm = speech
    slot = bits // 8
    reads = (len(pcm) * slot) // 1000 + 3  # past the end of the clip
    with VirtualBoard(tmp_path / "flash.img", mic=str(path), realtime=False) as b:
        raw, stats = capture(b.port, bits, chunk=1000, reads=reads)
        host_stats = b.mic_stats()
    got = np.frombuffer(raw, dtype="<i2" if bits == 16 else "<i4")
    if bits == 16:
        expected = pcm.astype(np.int64)
    else:  # 24 significant bits, left-justified in the 32-bit slot (INMP441)
        expected = pcm.astype(np.int64) << 16
        assert np.all(got & 0xFF == 0)
    np.testing.assert_array_equal(got[: len(pcm)], expected)
    assert np.all(got[len(pcm) :] == 0)
    zeros = len(got) - len(pcm)
    assert stats == {
        "source_samples": len(pcm),
        "zero_samples": zeros,
        "overruns": 0,
        "ended": True,
    }
    assert host_stats == stats


def test_i2s_stereo_puts_the_mono_source_on_the_left_slot(tmp_path, speech):
    path, pcm = speech
    with VirtualBoard(tmp_path / "flash.img", mic=str(path), realtime=False) as b:
        raw, _ = capture(b.port, 32, fmt="STEREO", chunk=800, reads=5)
    frames = np.frombuffer(raw, dtype="<i4").reshape(-1, 2)
    np.testing.assert_array_equal(frames[:, 0], pcm[: len(frames)].astype(np.int64) << 16)
    assert np.all(frames[:, 1] == 0)


def test_i2s_realtime_is_paced(tmp_path, speech):
    path, pcm = speech
    code = CAPTURE.replace(
        "import machine, binascii", "import machine, binascii, time\nt = time.ticks_ms()"
    )
    code = code.replace(
        "print('STATS'", "print('MS', time.ticks_diff(time.ticks_ms(), t))\nprint('STATS'"
    )
    with VirtualBoard(tmp_path / "flash.img", mic=str(path), realtime=True) as b:
        out = mpremote(b.port, "exec", code.format(bits=16, fmt="MONO", chunk=3200, reads=5))
    words = out.split()
    ms = int(words[words.index("MS") + 1])
    assert 450 <= ms < 1500  # 8000 samples at 16 kHz is 500 ms of audio


def test_i2s_refuses_a_wav_at_another_rate(tmp_path):
    path = tmp_path / "cd.wav"
    write_wav(path, np.zeros(100, np.int16), rate=44100)
    code = (
        "import machine\n"
        "try:\n"
        "    machine.I2S(0, sck=machine.Pin(4), ws=machine.Pin(5), sd=machine.Pin(6),\n"
        "                mode=machine.I2S.RX, bits=16, format=machine.I2S.MONO, rate=16000, ibuf=4000)\n"
        "except ValueError as e:\n"
        "    print('refused:', e)\n"
    )
    with VirtualBoard(tmp_path / "flash.img", mic=str(path), realtime=False) as b:
        out = mpremote(b.port, "exec", code)
    assert "refused:" in out and "44100 Hz" in out


def test_i2s_from_a_fifo_and_from_tcp(tmp_path):
    pcm = (np.arange(2000) * 13 - 13000).astype(np.int16)
    fifo = tmp_path / "mic.fifo"
    os.mkfifo(fifo)

    def feed_fifo():
        with open(fifo, "wb") as f:
            f.write(pcm.tobytes())

    srv = socket.create_server(("127.0.0.1", 0))

    def feed_tcp():
        conn, _ = srv.accept()
        with conn:
            conn.sendall(pcm.tobytes())

    for spec, feeder in (
        (f"fifo:{fifo}", feed_fifo),
        (f"tcp:127.0.0.1:{srv.getsockname()[1]}", feed_tcp),
    ):
        t = threading.Thread(target=feeder, daemon=True)
        t.start()
        with VirtualBoard(tmp_path / "flash.img", mic=spec, realtime=False) as b:
            raw, stats = capture(b.port, 16, chunk=1000, reads=5)
        t.join(5)
        got = np.frombuffer(raw, dtype="<i2")
        np.testing.assert_array_equal(got[:2000], pcm)
        assert np.all(got[2000:] == 0)
        assert stats["source_samples"] == 2000 and stats["ended"]
    srv.close()


def test_readinto_and_pin_value_allocate_nothing(tmp_path, speech):
    path, _ = speech
    code = (
        "import machine, micropython\n"
        "i2s = machine.I2S(0, sck=machine.Pin(4), ws=machine.Pin(5), sd=machine.Pin(6),\n"
        "                  mode=machine.I2S.RX, bits=32, format=machine.I2S.MONO, rate=16000, ibuf=8000)\n"
        "buf = bytearray(512)\n"
        "mv = memoryview(buf)\n"
        "button = machine.Pin(0, machine.Pin.IN, machine.Pin.PULL_UP)\n"
        "led = machine.Pin(2, machine.Pin.OUT)\n"
        "i2s.readinto(mv); button.value(); led.value(1)\n"
        "micropython.heap_lock()\n"
        "try:\n"
        "    for i in range(20):\n"
        "        i2s.readinto(mv)\n"
        "        button.value()\n"
        "        led.value(i & 1)\n"
        "finally:\n"
        "    micropython.heap_unlock()\n"
        "print('no allocation')\n"
    )
    with VirtualBoard(tmp_path / "flash.img", mic=str(path), realtime=False) as b:
        assert mpremote(b.port, "exec", code).strip() == "no allocation"


def test_pins_host_to_board_and_back(tmp_path):
    with VirtualBoard(tmp_path / "flash.img", realtime=False) as b:
        # An input with a pull-up reads 1 until the host pulls it low (a button press).
        out = mpremote(
            b.port,
            "exec",
            "import machine\np = machine.Pin(0, machine.Pin.IN, machine.Pin.PULL_UP)\nprint(p.value())",
        )
        assert out.strip() == "1"
        assert b.get_pin(0) == 1
        b.set_pin(0, 0)
        out = mpremote(
            b.port, "exec", "import machine\nprint(machine.Pin(0, machine.Pin.IN).value())"
        )
        assert out.strip() == "0"
        b.set_pin(0, 1)
        out = mpremote(
            b.port, "exec", "import machine\nprint(machine.Pin(0, machine.Pin.IN).value())"
        )
        assert out.strip() == "1"
        # An output set on the board is seen by the host.
        mpremote(b.port, "exec", "import machine\nmachine.Pin(21, machine.Pin.OUT, value=1)")
        assert b.get_pin(21) == 1
        mpremote(b.port, "exec", "import machine\nmachine.Pin(21, machine.Pin.OUT).off()")
        assert b.get_pin(21) == 0
        # A loop on the board sees a level the host sets while it runs.
        b.set_pin(7, 0)
        waiter = subprocess.Popen(
            [
                *MPREMOTE,
                "connect",
                b.port,
                "exec",
                "import machine, time\np = machine.Pin(7, machine.Pin.IN)\n"
                "while not p.value():\n    time.sleep_ms(5)\nprint('pressed')",
            ],
            stdout=subprocess.PIPE,
        )
        time.sleep(0.5)
        assert waiter.poll() is None
        b.set_pin(7, 1)
        out, _ = waiter.communicate(timeout=10)
        assert out.decode().strip() == "pressed"


def test_i2c_and_identity_helpers(tmp_path):
    code = (
        "import machine\n"
        "i2c = machine.SoftI2C(scl=machine.Pin(9), sda=machine.Pin(8))\n"
        "print(i2c.scan())\n"
        "machine.I2C._sim_add_device(0x3c)\n"
        "i2c.writeto_mem(0x3c, 0x10, b'\\x01\\x02')\n"
        "print(i2c.scan(), list(i2c.readfrom_mem(0x3c, 0x10, 2)))\n"
        "try:\n"
        "    i2c.writeto(0x50, b'x')\n"
        "except OSError as e:\n"
        "    print('absent', e.errno)\n"
        "print(machine.freq(), len(machine.unique_id()), machine.reset_cause() == machine.PWRON_RESET)\n"
    )
    with VirtualBoard(tmp_path / "flash.img", realtime=False) as b:
        out = mpremote(b.port, "exec", code).splitlines()
        uid = mpremote(b.port, "exec", "import machine; print(machine.unique_id().hex())")
    with VirtualBoard(tmp_path / "flash.img", realtime=False) as b:
        assert mpremote(b.port, "exec", "import machine; print(machine.unique_id().hex())") == uid
    assert out == ["[]", "[60] [1, 2]", "absent 116", "240000000 6 True"]


def test_watchdog_resets_a_board_that_stops_feeding_it(tmp_path):
    with VirtualBoard(tmp_path / "flash.img", realtime=False) as b:
        out = mpremote(
            b.port,
            "exec",
            "import machine, time\n"
            "wdt = machine.WDT(timeout=300)\n"
            "for _ in range(8):\n"  # fed for 0.8 s: no reset
            "    time.sleep_ms(100)\n"
            "    wdt.feed()\n"
            "print('fed', machine.reset_cause())\n",
        )
        assert out.strip() == "fed 1"
        assert b.reset_cause == 1
        t0 = time.monotonic()
        deadline = t0 + 10
        while b.reset_cause != 3 and time.monotonic() < deadline:  # WDT_RESET
            time.sleep(0.02)
        assert b.reset_cause == 3
        assert time.monotonic() - t0 < 2
        out = mpremote(
            b.port, "exec", "import machine; print(machine.reset_cause() == machine.WDT_RESET)"
        )
        assert out.strip() == "True"


def test_rtc_datetime_set_and_read(tmp_path):
    code = (
        "import machine\n"
        "rtc = machine.RTC()\n"
        "rtc.datetime((2030, 1, 2, 2, 3, 4, 5, 0))\n"
        "d = rtc.datetime()\n"
        "print(d[:3], d[4:6])\n"
    )
    with VirtualBoard(tmp_path / "flash.img", realtime=False) as b:
        assert mpremote(b.port, "exec", code).strip() == "(2030, 1, 2) (3, 4)"
        assert mpremote(b.port, "rtc").strip()  # mpremote's own rtc command works


def test_realtime_reader_that_falls_behind_loses_the_oldest_audio(tmp_path, speech):
    path, pcm = speech
    code = (
        "import machine, time, binascii\n"
        "i2s = machine.I2S(0, sck=machine.Pin(4), ws=machine.Pin(5), sd=machine.Pin(6),\n"
        "                  mode=machine.I2S.RX, bits=16, format=machine.I2S.MONO, rate=16000,\n"
        "                  ibuf=3200)\n"  # 100 ms of DMA buffer
        "time.sleep_ms(300)\n"  # busy elsewhere: ~200 ms of audio overflow
        "buf = bytearray(800)\n"
        "i2s.readinto(buf)\n"
        "print(binascii.hexlify(buf).decode())\n"
        "print(i2s.stats()['overruns'])\n"
    )
    with VirtualBoard(tmp_path / "flash.img", mic=str(path), realtime=True) as b:
        hexdata, overruns = mpremote(b.port, "exec", code).split()
    lost = int(overruns)
    assert 2400 <= lost <= 6000  # about 200 ms at 16 kHz, with scheduling slack
    got = np.frombuffer(bytes.fromhex(hexdata), dtype="<i2")
    np.testing.assert_array_equal(got, pcm[lost : lost + 400])  # the newest audio, in order


def test_deepsleep_wakes_with_deepsleep_reset(tmp_path):
    with VirtualBoard(tmp_path / "flash.img", realtime=False) as b:
        pid = b.pid
        subprocess.run(
            [
                *MPREMOTE,
                "connect",
                b.port,
                "exec",
                "--no-follow",
                "import machine\nmachine.deepsleep(400)",
            ],
            capture_output=True,
            timeout=30,
        )
        t0 = time.monotonic()
        while b.reset_cause != 4 and time.monotonic() - t0 < 10:
            time.sleep(0.01)
        slept = time.monotonic() - t0
        assert b.reset_cause == 4 and b.pid != pid
        assert 0.2 < slept < 3
        out = mpremote(
            b.port,
            "exec",
            "import machine; print(machine.reset_cause() == machine.DEEPSLEEP_RESET)",
        )
        assert out.strip() == "True"


def test_pin_irq_fires_on_host_edges(tmp_path):
    code = (
        "import machine, time\n"
        "hits = []\n"
        "p = machine.Pin(12, machine.Pin.IN, machine.Pin.PULL_UP)\n"
        "p.irq(lambda pin: hits.append(pin.value()), machine.Pin.IRQ_FALLING)\n"
        "print('armed')\n"
        "t = time.ticks_ms()\n"
        "while len(hits) < 2 and time.ticks_diff(time.ticks_ms(), t) < 5000:\n"
        "    time.sleep_ms(5)\n"
        "print(hits)\n"
    )
    with VirtualBoard(tmp_path / "flash.img", realtime=False) as b:
        proc = subprocess.Popen(
            [*MPREMOTE, "connect", b.port, "exec", code], stdout=subprocess.PIPE
        )
        assert proc.stdout.readline().strip() == b"armed"
        for level in (0, 1, 0):  # falling, rising (not asked for), falling
            b.set_pin(12, level)
            time.sleep(0.1)
        out, _ = proc.communicate(timeout=10)
    assert out.strip() == b"[0, 0]"
