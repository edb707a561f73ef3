"""A corrupt /config.json on the flash: the node boots in a safe state and logs an error."""


def _boot_with_config(node, data):
    node.write_file("/config.json", data)
    try:
        # A soft reset that runs main.py and waits until the node listens (or stops): after a
        # hard reset the host's reconnection interrupts main.py wherever it has got to, and
        # on a loaded machine that was once before "listening" (so was a 1.5 s pause).
        node.boot(quiet=10.0)
        return node.events(), node.status()
    finally:
        node.exec("import os\nos.remove('/config.json')")


def test_truncated_config_runs_on_defaults(node):
    """A half-written /config.json: the node logs the error and listens on its defaults."""
    events, status = _boot_with_config(node, b'{"wake_words": ["hey_jar')
    errors = [e for e in events if e.get("event") == "error" and e.get("where") == "config"]
    assert errors, f"no config error event in {events}"
    assert any(e.get("event") == "listening" for e in events), events
    assert status["counters"].get("config_errors") == 1


def test_garbage_config_boots_safe(node):
    """Binary garbage in /config.json: an error event, and a node that still answers."""
    events, status = _boot_with_config(node, b"\x00\xff\xfe{not json\x80")
    errors = [e for e in events if e.get("event") == "error"]
    assert errors, f"no error event in {events}"
    assert status["version"]  # the REPL answers: a safe state, not a reboot loop
