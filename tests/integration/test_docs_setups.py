"""The common setups of docs/deployment.md, exactly as written there: each
block passes `socks5d -t` and a real socks5d started from it behaves as the
text around it says. The block's users file is replaced by the test's (its
users plus `guest`), its listeners by a free loopback port (the command
line's -l replaces the file's list), and `-t` runs with `--user nobody`, as
the packaged unit runs socks5d as its own user, never as root."""
import re
import subprocess
from pathlib import Path

import pytest
import socks  # PySocks

from harness import (REPO, USERS, free_port, greeting, handshake, read_until_closed, recv_exact,
                     scaled)

DOC = REPO / "docs" / "deployment.md"


def setups():
    blocks = re.findall(r"```\n# setup: (\S+)\n(.*?)```", DOC.read_text(), re.S)
    return {name: body for name, body in blocks}


def test_the_guide_has_the_four_setups():
    assert set(setups()) == {"team", "allowlist", "ipv6-only", "local"}


@pytest.fixture
def setup_conf(tmp_path, users_file, socks5d_bin):
    guest = subprocess.run([socks5d_bin, "passwd", "guest"], input="guest-pw\n",
                           capture_output=True, text=True, timeout=scaled(10))
    assert guest.returncode == 0, guest.stderr
    users = tmp_path / "users"
    users.write_text(Path(users_file).read_text() + guest.stdout)

    def write(name):
        path = tmp_path / f"{name}.conf"
        path.write_text(setups()[name].replace("/etc/socks5d/users", str(users)))
        return path
    return write


@pytest.mark.parametrize("name", ["team", "allowlist", "ipv6-only", "local"])
def test_each_setup_passes_the_check(socks5d_bin, setup_conf, name):
    r = subprocess.run([socks5d_bin, "-t", "-c", str(setup_conf(name)), "--user", "nobody"],
                       capture_output=True, text=True, timeout=scaled(20))
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stderr
    assert "warning" not in r.stderr, r.stderr


def rep_of(srv, host, port, auth=None):
    with srv.connect() as s:
        return handshake(s, host, port, auth)[0]


def test_team_needs_a_login_and_keeps_internal_networks_out(socks5d, setup_conf, echo):
    srv = socks5d("-c", str(setup_conf("team")))
    with srv.connect() as s:
        s.sendall(greeting((0x00,)))
        assert recv_exact(s, 2) == b"\x05\xff"  # no login, no tunnel
    alice = ("alice", USERS["alice"])
    assert rep_of(srv, "127.0.0.1", echo.port, alice) == 2  # deny-private


def test_allowlist_refuses_what_it_does_not_list(socks5d, setup_conf):
    conf = setup_conf("allowlist")
    srv = socks5d("-c", str(conf))
    # Every allow names 10.0.0.0/8: a client elsewhere is refused at accept,
    # before a byte, by the final deny.
    with srv.connect() as s:
        assert read_until_closed(s, scaled(3)) == b""
    deny_line = setups()["allowlist"].splitlines().index("deny") + 1
    line = srv.wait_access(1)[0]
    assert line["rule"] == f"{conf}:{deny_line}", line


def test_ipv6_only_refuses_ipv4_destinations_by_its_rule(socks5d, setup_conf, echo):
    conf = setup_conf("ipv6-only")
    srv = socks5d("-c", str(conf), listen=[f"[::1]:{free_port('::1')}"])
    alice = ("alice", USERS["alice"])
    assert rep_of(srv, "127.0.0.1", echo.port, alice) == 2
    v4_line = setups()["ipv6-only"].splitlines().index("deny to 0.0.0.0/0") + 1
    line = srv.wait_access(1)[0]
    assert line["rule"] == f"{conf}:{v4_line}", line


def test_local_serves_pysocks_without_a_login(socks5d, setup_conf, echo):
    srv = socks5d("-c", str(setup_conf("local")))
    s = socks.socksocket()
    s.set_proxy(socks.SOCKS5, "127.0.0.1", srv.port)
    s.settimeout(scaled(5))
    try:
        s.connect(("127.0.0.1", echo.port))
        s.sendall(b"through the local setup")
        assert recv_exact(s, 23) == b"through the local setup"
    finally:
        s.close()


# ---------------------------------------------------------------- the guides' commands

GUIDES = [REPO / "README.md", DOC, REPO / "packaging" / "socks5d.service"]
SYSUSERS = REPO / "packaging" / "socks5d.sysusers"


def test_the_guides_commands_fit_the_unit_and_its_user():
    """The unit runs socks5d as the user and group packaging/socks5d.sysusers
    makes, never as root: a users file given to another group is unreadable
    to it (the guide once named a group nothing made), and `-t` run as root
    checks a start as root, which refuses the guide's own listener beyond
    loopback, so every check in the guides runs as the unit's user."""
    made = {f[1] for f in (l.split() for l in SYSUSERS.read_text().splitlines())
            if f and f[0] in ("u", "g")}
    text = "\n".join(p.read_text() for p in GUIDES)
    groups = re.findall(r"chgrp (\S+) /etc/socks5d/users", text)
    assert groups and set(groups) <= made, (groups, made)
    checks = re.findall(r"^.*\bsocks5d -t -c /etc/socks5d/socks5d\.conf.*$", text, re.M)
    assert checks and all("sudo -u socks5d socks5d -t" in c or "ExecReload=" in c
                          for c in checks), checks
    assert "tee -a /etc/socks5d/users" not in text  # a second line for a user breaks the file

