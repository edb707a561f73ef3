# The voice node's boot.py: thin and stable, it never changes between app versions.
#
# The app lives in /app/<id>/ (a complete, verified tree) and /app/current names the active
# <id>; `voicenode deploy` switches versions by writing /app/current.tmp and renaming it over
# /app/current. Renaming is atomic on littlefs; on a FAT filesystem the old name is removed
# first, so a reset between the two steps leaves only current.tmp, which was complete before
# the rename started and is then the version to boot. A half-written name never names a
# directory that holds a manifest, so it is ignored.
import sys

try:
    import os
except ImportError:  # very old ports
    import uos as os  # type: ignore[no-redef]

_APP = "/app"


def _installed(name):
    try:
        with open(_APP + "/" + name) as f:
            app_id = f.read().strip()
    except OSError:
        return None
    if not app_id or "/" in app_id:
        return None
    try:
        os.stat(_APP + "/" + app_id + "/manifest.json")
    except OSError:
        return None
    return _APP + "/" + app_id


def _app_dir():
    return _installed("current") or _installed("current.tmp")


_dir = _app_dir()
if _dir is not None:
    if _dir in sys.path:
        sys.path.remove(_dir)
    sys.path.insert(0, _dir)
del _dir
