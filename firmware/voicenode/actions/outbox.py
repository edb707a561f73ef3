"""The outbox: a preallocated ring of messages waiting for the MQTT broker.

Events and intents are put here the moment they happen, whether or not the node is online;
the MQTT client (voicenode.actions.mqtt) drains the ring when it is connected. The ring has
a fixed number of fixed-size slots, made once. When it is full the OLDEST message is dropped
and counted (`voicenode.counters["mqtt_dropped"]`), so a long outage loses the stale past,
never silently and never the newest intent. A QoS 1 message stays in its slot after it was
sent ("in flight") until the broker's PUBACK frees it; if the link drops first it is sent
again (DUP) after the reconnect.

    >>> from voicenode.actions import outbox
    >>> outbox.publish("wake", {"word": "hey_jarvis", "score": 0.83})   # -> voicenode/<id>/wake

`publish(kind, fields)` is the one call the rest of the firmware needs: it turns an event of
the event log into a small JSON message on the node's topic for that kind. Only the kinds in
`TOPICS` go out; everything else stays on the serial console.
"""

import json
from array import array

from micropython import const

import voicenode

_USED = const(1)
_QOS1 = const(2)
_RETAIN = const(4)
_SENT = const(8)  # written to the socket; a QoS 1 message waits for its PUBACK
_DUP = const(16)  # sent before on an earlier connection: the DUP flag goes with the resend
_BUSY = const(32)  # its packet is being written now (the slot may be dropped meanwhile)

SLOTS = 16  # messages kept while offline
SLOT_BYTES = 384  # topic + payload of one message

#: kind of event -> (topic suffix, QoS, retain). Kinds not listed are not published.
TOPICS = {
    "wake": ("wake", 1, False),
    "intent": ("intent", 1, False),
    "command": ("intent", 1, False),  # the command recogniser's event, if it calls it that
    "mute": ("muted", 1, True),
    "unmute": ("muted", 1, True),
}


class Outbox:
    """A ring of `slots` messages of at most `slot_bytes` bytes (topic + payload) each.

    Slots between `head` and `head + span` (mod slots) are in order of arrival; a slot freed
    out of order (a late PUBACK) leaves a hole that the head skips. Everything is made here;
    put() and the client's calls copy bytes into or out of the slots.
    """

    def __init__(self, slots=SLOTS, slot_bytes=SLOT_BYTES):
        self.slots = slots
        self.slot_bytes = slot_bytes
        self.buf = bytearray(slots * slot_bytes)
        self.mv = memoryview(self.buf)
        self.tlen = array("H", bytes(2 * slots))
        self.plen = array("H", bytes(2 * slots))
        self.pid = array("H", bytes(2 * slots))
        self.flags = bytearray(slots)
        self.head = 0
        self.span = 0  # slots from head that are in use or holes
        self.dropped = 0
        self.too_big = 0

    def __len__(self):
        n = 0
        for i in range(self.slots):
            if self.flags[i] & _USED:
                n += 1
        return n

    def put(self, topic, payload, qos=0, retain=False):
        """Queue one message (str or bytes). Returns False if it can never fit a slot."""
        if isinstance(topic, str):
            topic = topic.encode()
        if isinstance(payload, str):
            payload = payload.encode()
        nt = len(topic)
        n = nt + len(payload)
        if n > self.slot_bytes:
            self.too_big += 1
            voicenode.count("mqtt_too_big")
            return False
        if self.span == self.slots:
            self._drop_oldest()
        i = (self.head + self.span) % self.slots
        self.span += 1
        off = i * self.slot_bytes
        self.buf[off : off + nt] = topic
        self.buf[off + nt : off + n] = payload
        self.tlen[i] = nt
        self.plen[i] = n - nt
        self.pid[i] = 0
        self.flags[i] = _USED | (_QOS1 if qos else 0) | (_RETAIN if retain else 0)
        return True

    def _drop_oldest(self):
        if self.flags[self.head] & _USED:
            self.dropped += 1
            voicenode.count("mqtt_dropped")
        self.flags[self.head] = 0
        self.head = (self.head + 1) % self.slots
        self.span -= 1
        self._compact()

    def _compact(self):
        # The head always rests on a used slot (or the ring is empty).
        while self.span and not self.flags[self.head] & _USED:
            self.head = (self.head + 1) % self.slots
            self.span -= 1

    def next_unsent(self):
        """Index of the oldest message not yet written to the socket, or -1."""
        for k in range(self.span):
            i = (self.head + k) % self.slots
            f = self.flags[i]
            if f & _USED and not f & (_SENT | _BUSY):
                return i
        return -1

    def topic(self, i):
        """A view into slot i's topic (valid until the slot is reused)."""
        off = i * self.slot_bytes
        return self.mv[off : off + self.tlen[i]]

    def payload(self, i):
        """A view into slot i's payload (valid until the slot is reused)."""
        off = i * self.slot_bytes + self.tlen[i]
        return self.mv[off : off + self.plen[i]]

    def qos(self, i):
        return 1 if self.flags[i] & _QOS1 else 0

    def retain(self, i):
        return bool(self.flags[i] & _RETAIN)

    def dup(self, i):
        return bool(self.flags[i] & _DUP)

    def sending(self, i):
        """The client copied slot i into its packet buffer and starts writing it."""
        self.flags[i] |= _BUSY

    def sent(self, i, pid=0):
        """Slot i was written to the socket: QoS 0 is done, QoS 1 waits for PUBACK `pid`.

        If the slot was dropped (ring full) while its packet was being written, it now holds
        a newer message that was never sent: that one is left alone.
        """
        f = self.flags[i]
        if not f & _BUSY:
            return
        if f & _QOS1:
            self.flags[i] = (f & ~_BUSY) | _SENT
            self.pid[i] = pid
        else:
            self.flags[i] = 0
            self._compact()

    def acked(self, pid):
        """The broker acknowledged packet id `pid`: free its slot. True if one was waiting."""
        for k in range(self.span):
            i = (self.head + k) % self.slots
            if self.flags[i] & _SENT and self.pid[i] == pid:
                self.flags[i] = 0
                self._compact()
                return True
        return False

    def requeue(self):
        """The link dropped: every message in flight goes out again (with DUP) on reconnect,
        and a message whose packet was cut off is sent again."""
        for i in range(self.slots):
            f = self.flags[i]
            if f & _SENT:
                self.flags[i] = (f & ~_SENT) | _DUP
            elif f & _BUSY:
                self.flags[i] = f & ~_BUSY

    def inflight(self):
        n = 0
        for i in range(self.slots):
            if self.flags[i] & _SENT:
                n += 1
        return n

    def clear(self):
        for i in range(self.slots):
            self.flags[i] = 0
        self.head = 0
        self.span = 0


_box = None
_base = "voicenode/node"


def default():
    """The node's outbox (made on first use)."""
    global _box
    if _box is None:
        _box = Outbox()
    return _box


def set_base(topic_base):
    """Set the topic prefix, `voicenode/<node_id>` (the MQTT client does this at start)."""
    global _base
    _base = topic_base


def base():
    return _base


def message(kind, fields):
    """(topic, payload, qos, retain) for an event, or None if that kind is not published.

    The payload is small JSON: `{"event_type": kind, ...fields}` (Home Assistant's event
    entities read "event_type"); mute state is "ON"/"OFF" for a binary sensor.
    """
    spec = TOPICS.get(kind)
    if spec is None:
        return None
    suffix, qos, retain = spec
    topic = _base + "/" + suffix
    if suffix == "muted":
        return topic, "ON" if kind == "mute" else "OFF", qos, retain
    et = "intent" if suffix == "intent" else kind
    body = '{"event_type": %s' % json.dumps(et)
    if fields:
        body += ", " + json.dumps(fields)[1:]
    else:
        body += "}"
    return topic, body, qos, retain


def publish(kind, fields=None):
    """Queue an event of the event log for MQTT. Returns True if it was queued."""
    m = message(kind, fields)
    if m is None:
        return False
    return default().put(m[0], m[1], m[2], m[3])
