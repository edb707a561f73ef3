"""A small MQTT 3.1.1 client that never blocks the audio loop, in the spirit of umqtt.simple.

The node's only network path. It speaks to one broker (from /secrets.json) and sends the
messages of the outbox (voicenode.actions.outbox): wake events and intents, the node's
availability and its Home Assistant discovery. Nothing else is ever written to the socket.

    c = MQTTClient("kitchen", "192.168.1.10", keepalive=60, will_topic=..., intro=[...])
    while True:
        block = mic.read()
        node.feed(block)
        c.poll()            # bounded work: at most one packet out and one read in

Why a state machine and not umqtt.simple: umqtt blocks in connect() and in every publish,
for seconds when the broker is down, and the microphone's DMA ring would overrun. Here the
socket is non-blocking and `poll()` does a bounded amount of work per call:

- DOWN: wait for the back-off to pass, then start a non-blocking TCP connect.
- CONNECTING: poll the socket for "writable"; then send CONNECT (client id, keep-alive,
  clean session, user/password, last will "offline" retained on the availability topic).
- CONNACK: wait for the broker's answer (refused: back off).
- UP: send the intro messages (availability "online", discovery), the SUBSCRIBE, then the
  outbox one message per call; PINGREQ when nothing was sent for keepalive/2; read PUBACK,
  PINGRESP, SUBACK and PUBLISH. No PINGRESP within a keep-alive period, a read of 0 bytes
  (the broker closed) or any socket error drops the link: QoS 1 messages in flight are put
  back in the outbox and sent again (DUP) after the reconnect.

Back-off: the first retry after `min_backoff_ms`, doubling up to `max_backoff_ms`, back to
the minimum after a successful CONNACK. An idle poll (UP, nothing to send or read) allocates
nothing. Resolving a host name (getaddrinfo) blocks once, at the first connect; use the
broker's IP address to avoid even that.
"""

import errno
import select
import socket
import time

from micropython import const

import voicenode
from voicenode.actions import outbox as _outbox

DOWN = const(0)
CONNECTING = const(1)
CONNACK = const(2)
UP = const(3)
STATES = ("down", "connecting", "connack", "up")

_CONNECT = const(0x10)
_CONNACK_T = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)
_SUBACK = const(0x90)
_PINGREQ = const(0xC0)
_PINGRESP = const(0xD0)
_DISCONNECT = const(0xE0)

_CHUNK = const(128)  # bytes read per poll
_RX = const(512)  # largest incoming packet kept (bigger ones are skipped)
_INPROGRESS = (errno.EINPROGRESS, getattr(errno, "EALREADY", 114), errno.EAGAIN)


class MQTTClient:
    """MQTT 3.1.1 over a non-blocking TCP socket, driven by `poll()`.

    Args:
        client_id: the MQTT client id (the node id).
        server: broker host name or IP address; port: its TCP port.
        user, password: optional credentials (str).
        keepalive: seconds; the client pings after keepalive/2 of silence. 0: no keep-alive.
        will_topic: availability topic; the broker publishes `will_msg` there, retained, when
            the link dies without a DISCONNECT.
        intro: [(topic, payload, retain)] sent (QoS 0) after every CONNACK, before the
            outbox: availability "online", discovery config.
        sub_topic: a topic to subscribe to (QoS 0), or None; messages go to `on_message`.
        box: the Outbox to drain (default: voicenode.actions.outbox.default()).
        on_state: called with the new state name on every change (for LED / log).
    """

    def __init__(
        self,
        client_id,
        server,
        port=1883,
        user=None,
        password=None,
        keepalive=60,
        will_topic=None,
        will_msg="offline",
        intro=(),
        sub_topic=None,
        on_message=None,
        box=None,
        min_backoff_ms=1000,
        max_backoff_ms=60000,
        connect_timeout_ms=5000,
        on_state=None,
    ):
        self.client_id = client_id
        self.server = server
        self.port = port
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.will_topic = will_topic
        self.will_msg = will_msg
        self.intro = list(intro)
        self.sub_topic = sub_topic
        self.on_message = on_message
        self.box = box if box is not None else _outbox.default()
        self.min_backoff_ms = min_backoff_ms
        self.max_backoff_ms = max_backoff_ms
        self.connect_timeout_ms = connect_timeout_ms
        self.on_state = on_state
        self.state = DOWN
        self._stopped = False  # disconnect() stops reconnecting until start()
        self.sock = None
        self._poller = None
        self._addr = None
        self._backoff = min_backoff_ms
        self._next_try = time.ticks_ms()
        self._t_state = self._next_try
        self._t_tx = self._next_try
        self._t_ping = 0
        self._ping_out = False
        self._pid = 0
        self._intro_i = 0
        self._subscribed = False
        self._cur = -1  # outbox slot whose packet is in the tx buffer
        # Buffers, made once.
        big = self.box.slot_bytes
        for t, p, _ in self.intro:
            big = max(big, len(t) + len(p))
        self._tx = bytearray(big + 16)
        self._txmv = memoryview(self._tx)
        self._tx_len = 0
        self._tx_off = 0
        self._chunk = bytearray(_CHUNK)
        self._rx = bytearray(_RX)
        self._rx_len = 0
        self._skip = 0
        # what happened, for status and tests
        self.connects = 0
        self.failures = 0
        self.last_error = None

    # ---- public -----------------------------------------------------------------------

    def publish(self, topic, msg, retain=False, qos=0):
        """Queue a message in the outbox (sent by poll()). False if it is too big."""
        return self.box.put(topic, msg, qos, retain)

    def is_up(self):
        return self.state == UP

    def state_name(self):
        return STATES[self.state]

    def poll(self):
        """Do a bounded amount of work; never blocks. Returns the state (DOWN..UP)."""
        now = time.ticks_ms()
        st = self.state
        if st == DOWN:
            if self._stopped:
                return st
            if time.ticks_diff(now, self._next_try) >= 0:
                self._start(now)
            return self.state
        try:
            if st == CONNECTING:
                if not self._connected(now):
                    return self.state
            if self._tx_len:
                self._flush(now)
            self._read(now)
            if self.state == UP:
                if not self._tx_len:
                    self._next_packet(now)
                    if self._tx_len:
                        self._flush(now)
                self._keepalive(now)
            elif self.state == CONNACK:
                if time.ticks_diff(now, self._t_state) > self.connect_timeout_ms:
                    raise OSError(errno.ETIMEDOUT)
        except OSError as e:
            self._drop(e)
        return self.state

    def start(self):
        """Connect again (at the next poll) after disconnect()."""
        self._stopped = False
        self._backoff = self.min_backoff_ms
        self._next_try = time.ticks_ms()

    def disconnect(self):
        """Say goodbye: availability "offline" (retained), then DISCONNECT (no last will).
        The client then stays down until start().

        Blocks for at most a moment: it is for shutting down, not for the audio loop.
        """
        self._stopped = True
        if self.state == UP and self.sock is not None:
            try:
                self._tx_len = 0
                if self.will_topic:
                    self._encode_publish(self.will_topic, self.will_msg, 0, True, False, 0)
                    self._flush_all()
                self._tx[0] = _DISCONNECT
                self._tx[1] = 0
                self._tx_len = 2
                self._tx_off = 0
                self._flush_all()
            except OSError:
                pass
        self._close()
        self._set_state(DOWN)

    # ---- connection -------------------------------------------------------------------

    def _set_state(self, st):
        if st != self.state:
            self.state = st
            self._t_state = time.ticks_ms()
            if self.on_state is not None:
                self.on_state(STATES[st])

    def _start(self, now):
        try:
            if self._addr is None:
                self._addr = socket.getaddrinfo(self.server, self.port, 0, socket.SOCK_STREAM)[0][
                    -1
                ]
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock = s
            s.setblocking(False)
            try:
                s.connect(self._addr)
            except OSError as e:
                if e.errno not in _INPROGRESS:
                    raise
            self._poller = select.poll()
            self._poller.register(s, select.POLLOUT)
            self._set_state(CONNECTING)
        except OSError as e:
            self._drop(e)

    def _connected(self, now):
        ev = self._poller.poll(0)  # type: ignore[union-attr]
        if not ev:
            if time.ticks_diff(now, self._t_state) > self.connect_timeout_ms:
                raise OSError(errno.ETIMEDOUT)
            return False
        if ev[0][1] & (select.POLLERR | select.POLLHUP):
            raise OSError(errno.ECONNREFUSED)
        self._poller.unregister(self.sock)  # type: ignore[union-attr]
        self._poller = None
        self._encode_connect()
        self._set_state(CONNACK)
        return True

    def _drop(self, err):
        self.failures += 1
        voicenode.count("mqtt_failures")
        self.last_error = err.errno if isinstance(err, OSError) and err.errno else str(err)
        self._close()
        self._next_try = time.ticks_add(time.ticks_ms(), self._backoff)
        self._backoff = min(self._backoff * 2, self.max_backoff_ms)
        self._set_state(DOWN)

    def _close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self._poller = None
        self.box.requeue()  # in flight or cut off: sent again after the reconnect
        self._tx_len = 0
        self._tx_off = 0
        self._rx_len = 0
        self._skip = 0
        self._cur = -1
        self._ping_out = False

    # ---- writing ----------------------------------------------------------------------

    def _flush(self, now):
        """Write what the socket takes of the tx buffer (once)."""
        n = self.sock.write(self._txmv[self._tx_off : self._tx_len])  # type: ignore[union-attr]
        if n is None:  # EAGAIN: the socket buffer is full, try again next poll
            return
        self._tx_off += n
        self._t_tx = now
        if self._tx_off >= self._tx_len:
            self._tx_len = 0
            self._tx_off = 0
            if self._cur >= 0:
                self.box.sent(self._cur, self._pid)
                self._cur = -1

    def _flush_all(self):
        t0 = time.ticks_ms()
        while self._tx_len:
            self._flush(time.ticks_ms())
            if self._tx_len and time.ticks_diff(time.ticks_ms(), t0) > 1000:
                raise OSError(errno.ETIMEDOUT)

    def _put_len(self, i, n):
        # MQTT "remaining length": 7 bits per byte, high bit = more.
        while True:
            b = n & 0x7F
            n >>= 7
            self._tx[i] = b | (0x80 if n else 0)
            i += 1
            if not n:
                return i

    def _put_str(self, i, s):
        if isinstance(s, str):
            s = s.encode()
        n = len(s)
        self._tx[i] = n >> 8
        self._tx[i + 1] = n & 0xFF
        self._tx[i + 2 : i + 2 + n] = s
        return i + 2 + n

    def _encode_connect(self):
        flags = 0x02  # clean session
        n = 10 + 2 + len(self.client_id)
        if self.will_topic:
            flags |= 0x04 | 0x20  # will, QoS 0, retained
            n += 2 + len(self.will_topic) + 2 + len(self.will_msg)
        if self.user:
            flags |= 0x80
            n += 2 + len(self.user)
            if self.password:
                flags |= 0x40
                n += 2 + len(self.password)
        tx = self._tx
        tx[0] = _CONNECT
        i = self._put_len(1, n)
        i = self._put_str(i, b"MQTT")
        tx[i] = 4  # protocol level 3.1.1
        tx[i + 1] = flags
        tx[i + 2] = self.keepalive >> 8
        tx[i + 3] = self.keepalive & 0xFF
        i = self._put_str(i + 4, self.client_id)
        if self.will_topic:
            i = self._put_str(i, self.will_topic)
            i = self._put_str(i, self.will_msg)
        if self.user:
            i = self._put_str(i, self.user)
            if self.password:
                i = self._put_str(i, self.password)
        self._tx_len = i
        self._tx_off = 0

    def _encode_publish(self, topic, payload, qos, retain, dup, pid):
        if isinstance(topic, str):
            topic = topic.encode()
        if isinstance(payload, str):
            payload = payload.encode()
        nt = len(topic)
        n = 2 + nt + len(payload) + (2 if qos else 0)
        tx = self._tx
        tx[0] = _PUBLISH | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
        i = self._put_len(1, n)
        i = self._put_str(i, topic)
        if qos:
            tx[i] = pid >> 8
            tx[i + 1] = pid & 0xFF
            i += 2
        tx[i : i + len(payload)] = payload
        self._tx_len = i + len(payload)
        self._tx_off = 0

    def _next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._pid

    def _next_packet(self, now):
        """Put the next packet in the tx buffer: intro, subscription, then the outbox."""
        if self._intro_i < len(self.intro):
            t, p, r = self.intro[self._intro_i]
            self._intro_i += 1
            self._encode_publish(t, p, 0, r, False, 0)
            return
        if self.sub_topic and not self._subscribed:
            self._subscribed = True
            tx = self._tx
            tx[0] = _SUBSCRIBE
            pid = self._next_pid()
            i = self._put_len(1, 2 + 2 + len(self.sub_topic) + 1)
            tx[i] = pid >> 8
            tx[i + 1] = pid & 0xFF
            i = self._put_str(i + 2, self.sub_topic)
            tx[i] = 0  # QoS 0
            self._tx_len = i + 1
            self._tx_off = 0
            return
        box = self.box
        i = box.next_unsent()
        if i < 0:
            return
        qos = box.qos(i)
        pid = self._next_pid() if qos else 0
        # A resend keeps no old id: the old connection's ids are gone with its session.
        self._encode_publish(box.topic(i), box.payload(i), qos, box.retain(i), box.dup(i), pid)
        box.sending(i)
        self._cur = i

    def _keepalive(self, now):
        if not self.keepalive:
            return
        ka = self.keepalive * 1000
        if self._ping_out:
            if time.ticks_diff(now, self._t_ping) > ka:
                raise OSError(errno.ETIMEDOUT)  # the broker stopped answering
        elif not self._tx_len and time.ticks_diff(now, self._t_tx) >= ka // 2:
            self._tx[0] = _PINGREQ
            self._tx[1] = 0
            self._tx_len = 2
            self._tx_off = 0
            self._ping_out = True
            self._t_ping = now
            self._flush(now)

    # ---- reading ----------------------------------------------------------------------

    def _read(self, now):
        n = self.sock.readinto(self._chunk)  # type: ignore[union-attr]
        if n is None:  # nothing there (EAGAIN)
            return
        if n == 0:
            raise OSError(errno.ECONNRESET)  # the broker closed the connection
        chunk = self._chunk
        rx = self._rx
        k = 0
        if self._skip:
            k = min(self._skip, n)
            self._skip -= k
        while k < n:
            if self._rx_len == _RX:
                break
            rx[self._rx_len] = chunk[k]
            self._rx_len += 1
            k += 1
        self._parse()

    def _parse(self):
        rx = self._rx
        while self._rx_len >= 2:
            # remaining length
            rl = 0
            mult = 1
            i = 1
            while True:
                if i >= self._rx_len:
                    return  # header not complete
                b = rx[i]
                rl += (b & 0x7F) * mult
                mult <<= 7
                i += 1
                if not b & 0x80:
                    break
                if i > 4:
                    raise OSError(errno.EPROTO if hasattr(errno, "EPROTO") else 71)
            total = i + rl
            if total > _RX:  # too big to keep: skip it
                voicenode.count("mqtt_rx_too_big")
                self._skip = total - self._rx_len
                self._rx_len = 0
                return
            if self._rx_len < total:
                return
            self._handle(rx[0], i, rl)
            rest = self._rx_len - total
            for j in range(rest):
                rx[j] = rx[total + j]
            self._rx_len = rest

    def _handle(self, hdr, off, rl):
        rx = self._rx
        t = hdr & 0xF0
        if t == _CONNACK_T:
            if self.state != CONNACK:
                return
            rc = rx[off + 1]
            if rc:
                voicenode.count("mqtt_refused")
                raise OSError(1000 + rc)  # 1000 + CONNACK return code (5: not authorised)
            self.connects += 1
            voicenode.count("mqtt_connects")
            self._backoff = self.min_backoff_ms
            self._intro_i = 0
            self._subscribed = False
            self._ping_out = False
            self._set_state(UP)
        elif t == _PUBACK:
            self.box.acked((rx[off] << 8) | rx[off + 1])
        elif t == _PINGRESP:
            self._ping_out = False
        elif t == _PUBLISH:
            qos = (hdr >> 1) & 3
            tl = (rx[off] << 8) | rx[off + 1]
            i = off + 2 + tl
            topic = bytes(rx[off + 2 : i])
            if qos:
                pid = (rx[i] << 8) | rx[i + 1]
                i += 2
                self._send_puback(pid)
            msg = bytes(rx[i : off + rl])
            if self.on_message is not None:
                self.on_message(topic, msg)
        # SUBACK and others: nothing to do

    def _send_puback(self, pid):
        # Only while the tx buffer is free; otherwise the broker resends (QoS 1).
        if self._tx_len:
            return
        self._tx[0] = _PUBACK
        self._tx[1] = 2
        self._tx[2] = pid >> 8
        self._tx[3] = pid & 0xFF
        self._tx_len = 4
        self._tx_off = 0


def discovery(node_id, base, words=(), prefix="homeassistant", name=None):
    """Home Assistant MQTT discovery: [(topic, payload, retain=True)] for one device.

    Two event entities (wake, intent), two sensors (last wake word, last intent) and a
    binary sensor (muted), all on the availability topic `<base>/availability`.
    """
    import json

    dev = {
        "ids": [node_id],
        "name": name or node_id,
        "mf": "voicenode",
        "mdl": "ESP32-S3 voice node",
        "sw": voicenode.__version__,
    }
    avty = base + "/availability"
    out = []

    def add(component, obj, cfg):
        cfg["uniq_id"] = node_id + "_" + obj
        cfg["avty_t"] = avty
        cfg["dev"] = dev
        out.append(
            ("%s/%s/%s/%s/config" % (prefix, component, node_id, obj), json.dumps(cfg), True)
        )

    add("event", "wake", {"name": "Wake word", "stat_t": base + "/wake", "evt_typ": ["wake"]})
    add("event", "intent", {"name": "Intent", "stat_t": base + "/intent", "evt_typ": ["intent"]})
    add(
        "sensor",
        "last_wake",
        {"name": "Last wake word", "stat_t": base + "/wake", "val_tpl": "{{ value_json.word }}"},
    )
    add(
        "sensor",
        "last_intent",
        {"name": "Last intent", "stat_t": base + "/intent", "val_tpl": "{{ value_json.intent }}"},
    )
    add("binary_sensor", "muted", {"name": "Muted", "stat_t": base + "/muted"})
    return out
