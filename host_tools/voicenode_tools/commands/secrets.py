"""`voicenode secrets`: write the Wi-Fi and MQTT broker secrets to /secrets.json on the node.

    voicenode secrets --file my-secrets.json            # a file shaped like secrets.example.json
    voicenode secrets --ssid home --wifi-password - --mqtt-host 192.168.1.10 --node-id kitchen
    voicenode secrets --show                             # what the node has (passwords masked)
    voicenode secrets --remove                           # back to an offline node

The secrets are checked on the host by the firmware's own rules (voicenode.net), then
written to /secrets.json.tmp and renamed over /secrets.json, so a reset mid-write never
leaves half a file. A password given as "-" is asked for without echo. Passwords are never
printed. The file is read at the node's next start (reset the board).
"""

import json

PATH = "/secrets.json"

# The firmware checks the secrets it reads with voicenode.net.validate; the host runs that same
# function on the MicroPython Unix port, so there is one set of rules. The secrets travel on
# stdin, never on a command line.
_VALIDATE = """
import sys, json
sys.path.insert(0, %r)
from voicenode import net
print(json.dumps(net.validate(json.loads(sys.stdin.read()))))
"""


def validate(secrets):
    """An error message for a bad secrets dict (the firmware's own rules), or None."""
    import subprocess

    from voicenode_tools import FIRMWARE_DIR

    res = subprocess.run(
        ["micropython", "-c", _VALIDATE % str(FIRMWARE_DIR)],
        input=json.dumps(secrets),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if res.returncode != 0:
        raise RuntimeError("the firmware's secrets check did not run: " + res.stderr[-500:])
    return json.loads(res.stdout.splitlines()[-1])


def masked(secrets):
    """A copy with every password replaced by '***'."""
    out = {}
    for section, body in secrets.items():
        out[section] = {k: ("***" if k == "password" else v) for k, v in body.items()}
    return out


def add_arguments(parser):
    parser.add_argument("--port", "-p", default=None, help="serial port, 'auto' (default) or 'sim'")
    parser.add_argument(
        "--flash", default=None, help="with --port sim: the virtual board's flash image"
    )
    parser.add_argument("--file", help="a JSON file shaped like firmware/secrets.example.json")
    parser.add_argument("--ssid", help="Wi-Fi network name")
    parser.add_argument("--wifi-password", help="Wi-Fi password ('-': ask without echo)")
    parser.add_argument("--mqtt-host", help="MQTT broker host name or IP address")
    parser.add_argument("--mqtt-port", type=int, help="MQTT broker port (default 1883)")
    parser.add_argument("--mqtt-user", help="MQTT user name")
    parser.add_argument("--mqtt-password", help="MQTT password ('-': ask without echo)")
    parser.add_argument("--node-id", help="the node's id in topics and Home Assistant")
    parser.add_argument(
        "--show", action="store_true", help="print the node's secrets, passwords masked"
    )
    parser.add_argument("--remove", action="store_true", help="delete /secrets.json from the node")


def _password(value, what):
    if value != "-":
        return value
    import getpass

    return getpass.getpass(f"{what}: ")


def build(args):
    """The secrets dict from --file and/or the flags (flags win)."""
    from voicenode_tools.cli import CommandError

    secrets = {}
    if args.file:
        try:
            with open(args.file) as f:
                secrets = json.load(f)
        except OSError as e:
            raise CommandError(f"cannot read {args.file}: {e.strerror}") from e
        except ValueError as e:
            raise CommandError(f"{args.file} is not valid JSON: {e}") from e
        if not isinstance(secrets, dict):
            raise CommandError(f"{args.file}: top level must be a JSON object")
    wifi = {"ssid": args.ssid, "password": _password(args.wifi_password, "Wi-Fi password")}
    mqtt = {
        "host": args.mqtt_host,
        "port": args.mqtt_port,
        "user": args.mqtt_user,
        "password": _password(args.mqtt_password, "MQTT password"),
        "node_id": args.node_id,
    }
    for section, values in (("wifi", wifi), ("mqtt", mqtt)):
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            secrets.setdefault(section, {})
            if isinstance(secrets[section], dict):
                secrets[section].update(given)
    if not secrets:
        raise CommandError("nothing to write: give --file or --ssid/--mqtt-host (see --help)")
    err = validate(secrets)
    if err is not None:
        raise CommandError(f"secrets: {err}")
    return secrets


_WRITE = """
import os
try:
    os.remove(%(path)r)
except OSError:
    pass
os.rename(%(tmp)r, %(path)r)
print(len(open(%(path)r).read()))
"""

_READ = """
import json
try:
    print(json.dumps({"secrets": json.loads(open(%r).read())}))
except OSError:
    print(json.dumps({"secrets": None}))
except ValueError:
    print(json.dumps({"secrets": "invalid"}))
"""


def run(args) -> int:
    from voicenode_tools.cli import CommandError
    from voicenode_tools.device import ports, transport

    secrets = None if (args.show or args.remove) else build(args)
    with ports.session(args.port, args.flash) as path:
        t = transport.connect(path)
        try:
            with transport.guard(path):
                if args.remove:
                    transport.run(
                        t, "import os\ntry:\n    os.remove(%r)\nexcept OSError:\n    pass\n" % PATH
                    )
                    print(f"{PATH} removed from {path}: the node stays offline after a reset")
                    return 0
                if args.show:
                    got = transport.run_json(t, _READ % PATH)["secrets"]
                    if got is None:
                        raise CommandError(f"no {PATH} on {path}: the node is offline")
                    if got == "invalid":
                        raise CommandError(f"{PATH} on {path} is not valid JSON")
                    print(json.dumps(masked(got), indent=2))
                    return 0
                data = json.dumps(secrets).encode()
                t.fs_writefile(PATH + ".tmp", data)
                n = int(transport.run(t, _WRITE % {"path": PATH, "tmp": PATH + ".tmp"}).split()[-1])
                if n != len(data):
                    raise CommandError(f"{PATH} on {path} has {n} bytes, not {len(data)}")
        finally:
            transport.close(t)
    parts = []
    if "wifi" in secrets:
        parts.append(f"Wi-Fi {secrets['wifi']['ssid']!r}")
    if "mqtt" in secrets:
        m = secrets["mqtt"]
        parts.append(f"broker {m['host']}:{m.get('port', 1883)}")
    print(f"wrote {PATH} on {path} ({', '.join(parts)}); reset the board to use it")
    return 0
