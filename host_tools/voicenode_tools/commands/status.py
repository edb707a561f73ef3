"""`voicenode status`: run `voicenode.status()` on the node and print it."""


def add_arguments(parser):
    parser.add_argument("--port", "-p", default=None, help="serial port, 'auto' (default) or 'sim'")
    parser.add_argument(
        "--flash", default=None, help="with --port sim: the virtual board's flash image"
    )
    parser.add_argument("--json", action="store_true", help="print the status as one JSON object")


_CODE = """
import sys
try:
    import voicenode
except ImportError:
    voicenode = None
if voicenode is None:
    print('NO-APP')
else:
    _i = voicenode.status(out=%r)
    _i['app'] = sys.path[0] if sys.path and sys.path[0].startswith('/app/') else None
    import json
    print('JSON ' + json.dumps(_i))
"""


def status(path, as_json=False):
    """The node's status dict (or None without an app) and the text it printed."""
    import json

    from voicenode_tools.device import transport

    t = transport.connect(path)
    try:
        with transport.guard(path):
            out = transport.run(t, _CODE % (False if as_json else None))
    finally:
        transport.close(t)
    lines = out.strip().splitlines()
    if lines and lines[-1].strip() == "NO-APP":
        return None, ""
    info = json.loads(lines[-1][len("JSON ") :])
    return info, "\n".join(lines[:-1])


def run(args) -> int:
    import json

    from voicenode_tools.cli import CommandError
    from voicenode_tools.device import ports

    with ports.session(args.port, args.flash) as path:
        info, text = status(path, args.json)
    if info is None:
        raise CommandError(
            f"no voice node app is installed on {path}: run voicenode deploy"
            + (" --port sim" if args.port == "sim" else "")
        )
    if args.json:
        print(json.dumps(info))
    else:
        print(text)
        print("%-10s %s" % ("app", info.get("app")))
    return 0
