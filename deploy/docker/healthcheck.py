"""The image's HEALTHCHECK: GET /health on the address the server in this container listens on.

The address is read from the kernel (the listening TCP sockets of the container's processes), so
it follows the configuration however it was set: server.port, MYAGENT_WS_PORT or --port.
Standard library only: it runs every 10 s in every replica.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import urllib.error
import urllib.request

LISTEN = "0A"  # the TCP state in /proc/net/tcp


def socket_inodes() -> set[str]:
    """The inodes of the sockets held by the processes this user can see, but this one."""
    inodes: set[str] = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # gone, or another user's
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return inodes


def decode(hex_address: str) -> str:
    """An address of /proc/net/tcp{,6}: 32-bit words in the host's (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def listening() -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket of this container's processes."""
    inodes = socket_inodes()
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as rows:
                lines = rows.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, port = fields[1].split(":")
            if fields[3] == LISTEN and fields[9] in inodes:
                found.append((decode(address), int(port, 16)))
    return found


def url(address: str, port: int) -> str:
    ip = ipaddress.ip_address(address)
    if ip.is_unspecified:  # bound to every address: ask on loopback
        ip = ipaddress.ip_address("127.0.0.1" if ip.version == 4 else "::1")
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"http://{host}:{port}/health"


def main() -> int:
    targets = sorted({url(address, port) for address, port in listening()})
    if not targets:
        print("unhealthy: no server listens in this container", file=sys.stderr)
        return 1
    for target in targets:
        try:
            with urllib.request.urlopen(target, timeout=2) as response:
                if response.status == 200:
                    return 0
        except (urllib.error.URLError, OSError) as exc:
            print(f"unhealthy: {target}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
