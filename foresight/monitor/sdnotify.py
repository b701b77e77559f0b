"""systemd's notify protocol (``Type=notify``, ``WatchdogSec=``) without a dependency.

When systemd starts the monitor with ``NOTIFY_SOCKET`` set, the health task sends ``READY=1``
once it runs, ``WATCHDOG=1`` each time it rewrites the health file (every second) and
``STOPPING=1`` at a graceful stop. If the event loop hangs the pings stop and systemd kills and
restarts the process after ``WatchdogSec``. Without ``NOTIFY_SOCKET`` every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"WATCHDOG=1"``) to systemd; False when not under systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):  # abstract namespace socket
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(path)
            s.sendall(state.encode())
    except OSError as e:
        log.debug("sd_notify %s failed: %s", state, e)
        return False
    return True
