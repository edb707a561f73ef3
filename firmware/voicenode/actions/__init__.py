"""Actions: what the node does with an event or an intent, and the only way out of it.

    >>> from voicenode import actions
    >>> acts = actions.start(node.cfg)   # outputs, LED feedback, Wi-Fi + MQTT from /secrets.json
    >>> acts.poll()                      # once per audio block, from node.main()'s loop

`start()` hooks the event log, so every `eventlog.emit(kind, **fields)` of the node also
reaches `Actions.on_event(kind, fields)`:

- "wake": LED shows LISTENING; published on voicenode/<id>/wake.
- "intent" (or "command"), fields {"intent": "light.on", "slots": {...}, "score": 0.91}:
  the GPIO outputs mapped to that intent (config "outputs", see gpio.py), LED UNDERSTOOD;
  an intent "unknown" or None (or an event "not_understood") shows NOT_UNDERSTOOD.
  Published on voicenode/<id>/intent.
- "mute"/"unmute": LED MUTED while muted; published retained on voicenode/<id>/muted.
- anything else (boot, status, error...) stays on the serial console.

What is published is only ever the event's own small fields (see outbox.TOPICS): the node has
no other path to the network. This package's __init__ stays light (eventlog is imported
through it by everything); the parts are imported inside start().
"""

import voicenode

_acts = None


class Actions:
    """The node's actions. Every part is optional (None: not there).

    Args:
        outputs: a gpio.Outputs; feedback: a feedback.Feedback; client: an MQTTClient;
        wifi: a net.Wifi (the client is polled only while it is up).
    """

    def __init__(self, outputs=None, feedback=None, client=None, wifi=None):
        self.outputs = outputs
        self.feedback = feedback
        self.client = client
        self.wifi = wifi

    def on_event(self, kind, fields):
        """React to one event of the event log (never raises: an action error is counted)."""
        try:
            self._on_event(kind, fields)
        except Exception as e:  # noqa: BLE001 - an action must never stop the node
            voicenode.count("action_errors")
            from voicenode.actions import eventlog

            # an "error" stays on the console (on_event ignores it), and the event log
            # bounds how deep listeners may emit, so this cannot loop
            eventlog.emit("error", where="actions", type=type(e).__name__, msg=str(e))

    def _on_event(self, kind, fields):
        from voicenode.actions import feedback as fb
        from voicenode.actions import outbox

        show = self.feedback.show if self.feedback is not None else None
        if kind == "wake":
            if show:
                show(fb.LISTENING)
        elif kind in ("intent", "command"):
            intent = fields.get("intent")
            if intent and intent != "unknown":  # commands.UNKNOWN: heard, not understood
                if self.outputs is not None:
                    self.outputs.handle(intent, fields.get("slots"))
                if show:
                    show(fb.UNDERSTOOD)
            elif show:
                show(fb.NOT_UNDERSTOOD)
        elif kind == "not_understood":
            if show:
                show(fb.NOT_UNDERSTOOD)
        elif kind in ("mute", "unmute"):
            if self.feedback is not None:
                self.feedback.muted(kind == "mute")
        if self.client is not None:  # offline by choice: nothing queues up
            outbox.publish(kind, fields)

    def on_message(self, topic, msg):
        """A message on the command topic: {"intent": ..., "slots": {...}} runs the outputs."""
        import json

        try:
            m = json.loads(msg)
        except ValueError:
            voicenode.count("mqtt_bad_commands")
            return
        if isinstance(m, dict) and isinstance(m.get("intent"), str) and self.outputs is not None:
            self.outputs.handle(m["intent"], m.get("slots"))

    def poll(self):
        """Bounded work for the LED, the output pulses, the Wi-Fi and the broker link."""
        if self.feedback is not None:
            self.feedback.poll()
        if self.outputs is not None:
            self.outputs.poll()
        if self.client is not None and (self.wifi is None or self.wifi.poll()):
            self.client.poll()


def hook(listener):
    """Call `listener(kind, fields)` after every event the event log emits."""
    from voicenode.actions import eventlog

    eventlog.add_listener(listener)


def unhook():
    """Forget every listener hooked by hook() (tests; a node restarted in the REPL)."""
    from voicenode.actions import eventlog

    eventlog.clear_listeners()


def start(cfg=None, secrets=None, secrets_path=None, led=False):
    """Make the node's actions from its config and /secrets.json, and hook the event log.

    Args:
        cfg: the node's config (voicenode.config): "outputs" and "wake_words" are read.
        secrets: the secrets dict; default: read from `secrets_path` (/secrets.json).
        led: the LED for feedback (default: the board's, none on a port without a board).

    Returns:
        The Actions (also `current()`).
    """
    global _acts
    from voicenode import net
    from voicenode.actions import feedback, gpio, mqtt, outbox

    cfg = cfg or {}
    if secrets is None:
        secrets = net.load_secrets(secrets_path or net.SECRETS_PATH)
    outputs = gpio.Outputs(cfg.get("outputs") or {}) if cfg.get("outputs") else None
    fb = feedback.Feedback(led)
    wifi = client = None
    m = secrets.get("mqtt")
    if m:
        wifi = net.Wifi.from_secrets(secrets)
        wifi.start()
        nid = net.node_id(secrets)
        base = "voicenode/" + nid
        outbox.set_base(base)
        avail = base + "/availability"
        intro = [(avail, "online", True)]
        intro += mqtt.discovery(
            nid,
            base,
            cfg.get("wake_words", ()),
            m.get("discovery_prefix", "homeassistant"),
            m.get("name"),
        )
        acts = Actions(outputs, fb, None, wifi)
        client = mqtt.MQTTClient(
            nid,
            m["host"],
            m.get("port", 1883),
            m.get("user"),
            m.get("password"),
            keepalive=m.get("keepalive", 60),
            will_topic=avail,
            intro=intro,
            sub_topic=base + "/command" if m.get("command_topic") else None,
            on_message=acts.on_message,
        )
        acts.client = client
    else:
        acts = Actions(outputs, fb, None, None)
    unhook()
    hook(acts.on_event)
    _acts = acts
    return acts


def current():
    """The Actions start() made, or None."""
    return _acts
