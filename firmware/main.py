# The voice node's main.py: thin and stable. It starts the node if the installed app has
# one (voicenode.node.main()), otherwise prints one status line. Any error is logged as an
# "error" event and main.py returns, which leaves the board at the REPL: a safe state that
# `voicenode deploy` and `voicenode repl` can reach, never a reboot loop.
import sys


def _start():
    try:
        import voicenode
    except ImportError as e:
        print("voicenode: no app installed (%s); run `voicenode deploy`" % e)
        return
    app = sys.path[0] if sys.path and sys.path[0].startswith("/app/") else None
    try:
        from voicenode.actions import eventlog

        eventlog.emit("boot", version=voicenode.__version__, app=app)
    except ImportError:
        pass
    try:
        import voicenode.node as node
    except ImportError as e:
        # Only "voicenode.node does not exist" means "no node yet"; an ImportError raised
        # from inside node.py is a real error and goes up to be logged.
        if "voicenode.node" not in str(e):
            raise
        print(
            "voicenode %s on %s: app installed, no node to start"
            % (voicenode.__version__, voicenode.board_name())
        )
        return
    node.main()


try:
    _start()
except KeyboardInterrupt:
    print("voicenode: stopped (Ctrl-C)")
except Exception as e:  # noqa: BLE001 - anything else: log it and stay at the REPL
    try:
        from voicenode.actions import eventlog

        eventlog.emit("error", where="main", type=type(e).__name__, msg=str(e))
    except Exception:
        pass
    sys.print_exception(e)
