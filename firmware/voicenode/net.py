"""Wi-Fi bring-up from /secrets.json, and the node's network identity.

/secrets.json (written with `voicenode secrets`, never committed; see secrets.example.json):

    {"wifi": {"ssid": "home", "password": "..."},
     "mqtt": {"host": "192.168.1.10", "port": 1883, "user": "node", "password": "...",
              "node_id": "kitchen", "keepalive": 60, "discovery_prefix": "homeassistant",
              "command_topic": false}}

No file, or no "wifi" section: the node stays offline and only prints events on the serial
console (a complete, private node). A file that cannot be parsed or holds a wrong type is
reported as an "error" event and ignored, never fatal, and its contents are never printed.

On the MicroPython Unix port there is no `network` module: the host is "already online"
and sockets just work, so `Wifi.is_up()` is always True there.

The station is started with WLAN.connect(), which returns at once on the ESP32; `poll()`
checks the link from the node's loop and reconnects with back-off (1 s doubling to 60 s),
so the audio loop never waits for the access point.
"""

import json
import time

import voicenode

SECRETS_PATH = "/secrets.json"

# section -> {key: type}; every key is optional except the ones in _REQUIRED
_SCHEMA = {  # type: dict
    "wifi": {"ssid": str, "password": str, "hostname": str},
    "mqtt": {
        "host": str,
        "port": int,
        "user": str,
        "password": str,
        "node_id": str,
        "keepalive": int,
        "discovery_prefix": str,
        "command_topic": bool,
        "name": str,
    },
}
_REQUIRED = {"wifi": ("ssid",), "mqtt": ("host",)}


def _error(msg):
    voicenode.count("secrets_errors")
    from voicenode.actions import eventlog

    eventlog.emit("error", where="secrets", msg=msg)


def validate(secrets):
    """An error message for a bad secrets dict (naming keys, never values), or None."""
    if not isinstance(secrets, dict):
        return "top level must be a JSON object"
    for section, body in secrets.items():
        schema = _SCHEMA.get(section)
        if schema is None:
            return "unknown section %r" % section
        if not isinstance(body, dict):
            return "%r must be an object" % section
        for key, value in body.items():
            if key not in schema:
                return "unknown key %s.%s" % (section, key)
            want = schema[key]
            if type(value) is not want:
                return "%s.%s must be a %s" % (section, key, want.__name__)
        for key in _REQUIRED[section]:
            if not body.get(key):
                return "%s.%s is required" % (section, key)
    port = secrets.get("mqtt", {}).get("port", 1883)
    if not 0 < port < 65536:
        return "mqtt.port must be 1..65535"
    nid = secrets.get("mqtt", {}).get("node_id", "x")
    if not nid or "/" in nid or "+" in nid or "#" in nid:
        return "mqtt.node_id must be a plain name (no / + #)"
    return None


def load_secrets(path=SECRETS_PATH):
    """The secrets dict ({} when there is no file or it is not valid)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return {}
    try:
        secrets = json.loads(text)
    except ValueError:
        _error("%s is not valid JSON; staying offline" % path)
        return {}
    err = validate(secrets)
    if err is not None:
        _error("%s: %s; staying offline" % (path, err))
        return {}
    return secrets


def _mac():
    try:
        import network

        return network.WLAN(network.STA_IF).config("mac")
    except (ImportError, AttributeError, OSError, ValueError):
        return None


def node_id(secrets=None):
    """The node's id: mqtt.node_id from the secrets, else "voicenode-" + the last 3 bytes
    of the Wi-Fi MAC, else "voicenode" (the Unix port)."""
    nid = ((secrets or {}).get("mqtt") or {}).get("node_id")
    if nid:
        return nid
    mac = _mac()
    if mac:
        return "voicenode-%02x%02x%02x" % (mac[-3], mac[-2], mac[-1])
    return "voicenode"


class Wifi:
    """The Wi-Fi station, or the Unix port's always-up host network.

    Args:
        ssid, password: the access point; ssid None means "no Wi-Fi configured".
    """

    def __init__(
        self, ssid=None, password=None, hostname=None, min_backoff_ms=1000, max_backoff_ms=60000
    ):
        self.ssid = ssid
        self.password = password
        self.hostname = hostname
        self.min_backoff_ms = min_backoff_ms
        self.max_backoff_ms = max_backoff_ms
        self._backoff = min_backoff_ms
        self._next = time.ticks_ms()
        self._was_up = False
        try:
            import network
        except ImportError:
            network = None  # type: ignore[assignment]
        self.network = network
        self.wlan = None

    @classmethod
    def from_secrets(cls, secrets):
        w = (secrets or {}).get("wifi") or {}
        return cls(w.get("ssid"), w.get("password", ""), w.get("hostname"))

    def hosted(self):
        """True on a port without `network` (Unix): the host's network is used as it is."""
        return self.network is None

    def start(self):
        """Start the station and its first connect (returns at once)."""
        if self.network is None or not self.ssid:
            return
        net = self.network
        if self.hostname:
            try:
                net.hostname(self.hostname)
            except (AttributeError, ValueError, OSError):
                pass
        self.wlan = net.WLAN(net.STA_IF)
        self.wlan.active(True)
        self._connect()

    def _connect(self):
        try:
            self.wlan.connect(self.ssid, self.password)  # type: ignore[union-attr]
        except OSError:
            voicenode.count("wifi_errors")
        self._next = time.ticks_add(time.ticks_ms(), self._backoff)
        self._backoff = min(self._backoff * 2, self.max_backoff_ms)

    def is_up(self):
        if self.network is None:
            return True
        return self.wlan is not None and self.wlan.isconnected()

    def poll(self):
        """Check the link; reconnect with back-off when it is down. Returns is_up()."""
        up = self.is_up()
        if up != self._was_up:
            self._was_up = up
            from voicenode.actions import eventlog

            if up:
                self._backoff = self.min_backoff_ms
                eventlog.emit("wifi", state="up")
            else:
                eventlog.emit("wifi", state="down")
        if not up and self.wlan is not None and time.ticks_diff(time.ticks_ms(), self._next) >= 0:
            self._connect()
        return up
