"""Two "hosts" on one machine: Linux network namespaces joined by a veth pair, for multi-host tests.

Each host is a network namespace with `lo` up and one end of a veth pair that carries an address this
module assigns (10.213.7.1/24 and 10.213.7.2/24, which exist only inside the two namespaces). A command
runs on a host through `ip netns exec` and, under `unshare --uts`, with its own host name, so luigid and
its task history see two machines. Namespaces and links are named after the pid and a tag, so
concurrent test runs never collide, and `two_hosts` always removes them, killing what still runs there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

SUBNET_PREFIX = "10.213.7"
# Sets the UTS namespace's host name, then becomes the command: no dependency on a `hostname` binary.
_SET_HOSTNAME = "import os, socket, sys; socket.sethostname(sys.argv[1]); os.execvp(sys.argv[2], sys.argv[2:])"


@dataclass(frozen=True)
class Host:
    """One simulated machine: its network namespace, host name and address on the shared link."""

    namespace: str
    label: str  # "hostA" or "hostB"
    address: str

    @property
    def hostname(self) -> str:
        return f"fmnist-{self.label}"

    def command(self, argv: list[str]) -> list[str]:
        """`argv` as run on this host: inside its network namespace, under its own host name."""
        named = ["unshare", "--uts", "--", sys.executable, "-c", _SET_HOSTNAME, self.hostname, *argv]
        return ["ip", "netns", "exec", self.namespace, *named]

    def pids(self) -> list[int]:
        """The processes now running in this host's network namespace."""
        listed = subprocess.run(["ip", "netns", "pids", self.namespace], capture_output=True, text=True)
        return [int(word) for word in listed.stdout.split()]


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise OSError(f"`ip {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")


def missing_requirements() -> str | None:
    """Why namespaces cannot be made here, or None when they can be tried."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); run the test as root"
    for tool, package in (("ip", "iproute2"), ("unshare", "util-linux")):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed: apt-get install {package} (CI installs it)"
    return None


@contextlib.contextmanager
def two_hosts(tag: str) -> Iterator[tuple[Host, Host]]:
    """Make hosts A and B joined by a veth pair; skip the test, with the reason, if that is impossible.

    Teardown kills every process left in either namespace (all started by this test) and deletes both
    namespaces, which removes the veth pair with them.
    """
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    base = f"fmn{os.getpid()}{tag}"
    hosts = tuple(
        Host(namespace=f"{base}-{side}", label=f"host{side.upper()}", address=f"{SUBNET_PREFIX}.{index}")
        for index, side in ((1, "a"), (2, "b"))
    )
    links = [f"{base}{side}"[-15:] for side in ("a", "b")]  # interface names: at most 15 characters
    created: list[Host] = []
    try:
        try:
            for host in hosts:
                _ip("netns", "add", host.namespace)
                created.append(host)
            _ip("link", "add", links[0], "type", "veth", "peer", "name", links[1])
            for host, link in zip(hosts, links, strict=True):
                _ip("link", "set", link, "netns", host.namespace)
                _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", link)
                _ip("-n", host.namespace, "link", "set", link, "up")
                _ip("-n", host.namespace, "link", "set", "lo", "up")
        except OSError as exc:
            pytest.skip(f"cannot make network namespaces here (needs CAP_SYS_ADMIN and CAP_NET_ADMIN): {exc}")
        yield hosts
    finally:
        for host in created:
            for pid in host.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            subprocess.run(["ip", "netns", "delete", host.namespace], capture_output=True, timeout=30)
