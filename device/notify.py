"""sd_notify without a dependency: READY, WATCHDOG pings and STATUS lines to systemd.

Outside systemd (no $NOTIFY_SOCKET) every call is a no-op, so the daemon runs the same in a shell.
"""

from __future__ import annotations

import logging
import os
import socket
import time

logger = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        self._socket: socket.socket | None = None
        self._address = "\0" + address[1:] if address.startswith("@") else address
        if address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            # A datagram to a reader that has fallen behind would block the capture loop (the
            # queue holds ~10 messages); a dropped ping is sent again on the next iteration.
            self._socket.setblocking(False)
        usec = os.environ.get("WATCHDOG_USEC", "")
        # ping twice per watchdog period, as sd_watchdog_enabled(3) recommends
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and int(usec) else None
        self._last_ping = float("-inf")

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, message: str) -> None:
        if self._socket is None:
            return
        try:
            self._socket.sendto(message.encode(), self._address)
        except BlockingIOError:
            logger.debug("sd_notify queue full, dropped %r", message.split("\n")[0])
        except OSError as error:  # systemd gone (shutdown): keep working, say it once
            logger.debug("sd_notify failed: %s", error)

    def ready(self, status: str = "") -> None:
        self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        """Ping at most twice per watchdog period; call it from every loop iteration."""
        if self.watchdog_interval is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval / 2:
            self._last_ping = now
            self.send("WATCHDOG=1")
