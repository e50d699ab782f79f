"""Process hardening: dropping privileges, refusing to run as root beyond
loopback, no core dumps, not dumpable, and running out of descriptors
without spinning or leaking.

These tests need root (CI runs as root): they start servers as root that
drop to `nobody`, and start servers as `nobody` with setpriv.

Run: /usr/bin/python3 -m pytest -q tests/integration/test_hardening.py
"""
import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from harness import (free_port, greeting, open_tunnel, read_reply, read_until_closed, recv_exact,
                     request, scaled, wait_until)
from security_support import (ALICE, POOLED_PIPES_PER_WORKER, REP_SUCCEEDED, as_user,
                              closes_all, connect_from, cpu_seconds, echo_ok, fd_count, fd_split,
                              fd_targets, limit_row, other_fds, proc_status, run_expect_exit,
                              settle_fd_count, with_nofile)

NOBODY = pwd.getpwnam("nobody")


def need_root():
    if os.geteuid() != 0:
        pytest.fail("the hardening tests must run as root (as CI does)")


def tasks(pid):
    return sorted(os.listdir(f"/proc/{pid}/task"))


# ---------------------------------------------------------------- privilege drop


def groups_of(name):
    """The supplementary groups initgroups(3) gives a user, as /proc shows them."""
    pw = pwd.getpwnam(name)
    return " ".join(str(g) for g in sorted(set(os.getgrouplist(name, pw.pw_gid))))


def test_user_option_drops_to_nobody_in_every_thread(socks5d, echo):
    need_root()
    srv = socks5d("--auth", "none", "--user", "nobody")
    uid, gid = str(NOBODY.pw_uid), str(NOBODY.pw_gid)
    ids = wait_until(lambda: tasks(srv.pid) if len(tasks(srv.pid)) > 1 else None, scaled(5),
                     what="worker threads")
    for tid in ids:
        # Credentials and no_new_privs are per thread: check each one.
        st = proc_status(f"{srv.pid}/task/{tid}")
        assert st["Uid"].split() == [uid] * 4, (tid, st["Uid"])
        assert st["Gid"].split() == [gid] * 4, (tid, st["Gid"])
        # nobody's own groups (initgroups), none of root's.
        assert st["Groups"] == groups_of("nobody"), (tid, st["Groups"])
        assert st["NoNewPrivs"] == "1", (tid, st["NoNewPrivs"])
        for cap in ("CapPrm", "CapEff", "CapAmb"):
            assert int(st[cap], 16) == 0, (tid, cap, st[cap])
    assert f"running as nobody (uid {uid}, gid {gid})" in srv.log()
    # Not dumpable after the uid change: /proc files of a dumpable process
    # belong to its user (see test_server_is_not_dumpable).
    assert os.stat(f"/proc/{srv.pid}/status").st_uid == 0, "dumpable after the drop"
    assert os.stat(f"/proc/{srv.pid}/mem").st_uid == 0, "dumpable after the drop"
    # Still serving.
    with open_tunnel(srv, *echo.addr) as s:
        echo_ok(s, b"as nobody")


@pytest.fixture
def run_user():
    """A throw-away user with a supplementary group (e.g. one allowed to read
    a key), removed after the test."""
    tag = f"s5d{os.getpid() % 100000}"
    user, group = f"{tag}u", f"{tag}g"
    subprocess.run(["groupadd", group], check=True, capture_output=True, timeout=30)
    try:
        subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", "-G", group, user],
                       check=True, capture_output=True, timeout=30)
        try:
            yield user, grp.getgrnam(group).gr_gid
        finally:
            subprocess.run(["userdel", user], capture_output=True, timeout=30)
    finally:
        subprocess.run(["groupdel", group], capture_output=True, timeout=30)


def test_user_option_takes_the_run_users_supplementary_groups(run_user, socks5d, echo):
    need_root()
    user, extra = run_user
    pw = pwd.getpwnam(user)
    srv = socks5d("--auth", "none", "--user", user)
    with open_tunnel(srv, *echo.addr) as s:
        echo_ok(s, b"as a user with groups")
    for tid in tasks(srv.pid):
        st = proc_status(f"{srv.pid}/task/{tid}")
        assert st["Uid"].split() == [str(pw.pw_uid)] * 4, (tid, st["Uid"])
        groups = st["Groups"].split()
        assert str(extra) in groups and "0" not in groups, (tid, st["Groups"])
        assert st["Groups"] == groups_of(user), (tid, st["Groups"])


def test_user_option_allows_a_non_loopback_listener_as_root(socks5d, users_file, echo):
    need_root()
    port = free_port("0.0.0.0")
    srv = socks5d("--auth", "userpass", "--users", users_file, "--user", "nobody",
                  listen=[f"0.0.0.0:{port}"])
    assert proc_status(srv.pid)["Uid"].split() == [str(NOBODY.pw_uid)] * 4
    with open_tunnel(srv, *echo.addr, auth=ALICE) as s:
        echo_ok(s, b"users file read before the drop")


def test_unknown_user_exits_2_with_a_message(socks5d_bin):
    need_root()
    r = run_expect_exit(socks5d_bin, "-l", f"127.0.0.1:{free_port()}", "--auth", "none",
                        "--user", "no-such-user-s5d")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "no-such-user-s5d" in r.stderr and "no such user" in r.stderr, r.stderr


def test_root_with_non_loopback_listener_needs_user_or_allow_root(socks5d_bin, socks5d,
                                                                  users_file, echo):
    need_root()
    port = free_port("0.0.0.0")
    r = run_expect_exit(socks5d_bin, "-l", f"0.0.0.0:{port}", "--auth", "userpass", "--users",
                        users_file)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "allow-root" in r.stderr, r.stderr
    # With --allow-root it starts, as root.
    srv = socks5d("--auth", "userpass", "--users", users_file, "--allow-root",
                  listen=[f"0.0.0.0:{port}"])
    assert proc_status(srv.pid)["Uid"].split() == ["0"] * 4
    with open_tunnel(srv, *echo.addr, auth=ALICE) as s:
        echo_ok(s, b"root by request")


def test_root_on_loopback_only_starts_without_allow_root(socks5d, echo):
    need_root()
    srv = socks5d("--auth", "none", listen=[f"127.0.0.1:{free_port()}",
                                             f"[::1]:{free_port('::1')}"])
    # no_new_privs is per thread: every thread must have it.
    for tid in tasks(srv.pid):
        assert proc_status(f"{srv.pid}/task/{tid}")["NoNewPrivs"] == "1", f"thread {tid}"
    with open_tunnel(srv, *echo.addr) as s:
        echo_ok(s)


# ---------------------------------------------------------------- core dumps, dumpable


def test_core_dumps_are_off(socks5d):
    srv = socks5d("--auth", "none")
    assert limit_row(srv.pid, "Max core file size") == ("0", "0")


@pytest.fixture
def world_exec_copy(socks5d_bin):
    """A copy of the binary any user can run (the checkout may sit where
    `nobody` cannot go). Set up before `socks5d` in a test's arguments, it
    is removed only after the servers are stopped."""
    d = tempfile.mkdtemp(prefix="s5d-hardening-")
    os.chmod(d, 0o755)
    exe = os.path.join(d, os.path.basename(socks5d_bin))
    shutil.copy2(socks5d_bin, exe)
    os.chmod(exe, 0o755)
    yield exe
    shutil.rmtree(d, ignore_errors=True)


def test_server_is_not_dumpable(world_exec_copy, socks5d, echo):
    """Run the server as nobody from the start (no uid change inside, which
    alone would clear the flag): a dumpable process's /proc files belong to
    its user; a non-dumpable one's to root, and a process of the same user
    cannot read its memory or environment."""
    need_root()
    uid = NOBODY.pw_uid
    # Control: an ordinary process of nobody is dumpable on this kernel.
    ctl = subprocess.Popen(as_user("nobody").exec_prefix + ["sleep", "30"])
    try:
        wait_until(lambda: os.stat(f"/proc/{ctl.pid}/status").st_uid == uid, scaled(5),
                   what="the control process to run as nobody")
    finally:
        ctl.kill()
        ctl.wait(5)

    srv = socks5d("--auth", "none", netns=as_user("nobody", world_exec_copy))
    st = proc_status(srv.pid)
    assert st["Uid"].split() == [str(uid)] * 4
    assert os.readlink(f"/proc/{srv.pid}/exe") == world_exec_copy
    with open_tunnel(srv, *echo.addr) as s:  # serving, i.e. past the hardening
        echo_ok(s)
    assert os.stat(f"/proc/{srv.pid}/status").st_uid == 0, "server is dumpable"
    assert os.stat(f"/proc/{srv.pid}/mem").st_uid == 0, "server is dumpable"
    r = subprocess.run(as_user("nobody").exec_prefix + ["cat", f"/proc/{srv.pid}/environ"],
                       capture_output=True, timeout=scaled(10))
    assert r.returncode != 0 and b"ermission denied" in r.stderr, (r.returncode, r.stderr)
    assert limit_row(srv.pid, "Max core file size") == ("0", "0")
    assert st["NoNewPrivs"] == "1"


# ---------------------------------------------------------------- out of descriptors


NOFILE = 64


def test_out_of_descriptors_no_busy_loop_no_leak_then_recovers(socks5d, echo):
    # --max-sessions well above what the fds allow, so the fds run out first.
    srv = socks5d("--auth", "none", "--max-sessions", "1000", "--timeout-handshake", "60s",
                  "-w", "2", netns=with_nofile(NOFILE))
    assert limit_row(srv.pid, "Max open files") == (str(NOFILE), str(NOFILE))
    with open_tunnel(srv, *echo.addr) as s:
        echo_ok(s, b"warm up")
    base_pipes, baseline = fd_split(srv.pid)
    clients, tunnels, refused = [], 0, 0
    waiting = None
    try:
        # Tunnels until one cannot be made (no reply: accept failed; or a
        # failure reply: the outgoing socket could not be made).
        for _ in range(NOFILE):
            s = connect_from(srv)
            clients.append(s)
            s.settimeout(1.0)
            try:
                s.sendall(greeting() + request(*echo.addr))
                if recv_exact(s, 2) != b"\x05\x00" or read_reply(s)[0] != REP_SUCCEEDED:
                    refused += 1
                    break
                tunnels += 1
            except (socket.timeout, EOFError, ConnectionResetError):
                refused += 1
                break
        assert tunnels >= 10, f"only {tunnels} tunnels before running out"
        assert refused, f"{tunnels} tunnels and the server still had descriptors"
        # More clients fill what is left of the descriptor budget; past it
        # they are refused at once (a failure reply or a close), none is left
        # waiting in the accept queue (issue 10, finding 7).
        for _ in range(8):
            clients.append(connect_from(srv))
        waiting = connect_from(srv)
        waiting.sendall(greeting() + request(*echo.addr))
        answer = read_until_closed(waiting, scaled(2))
        assert len(answer) < 4 or answer[3] != REP_SUCCEEDED, answer
        full = fd_count(srv.pid)
        assert full <= NOFILE, (full, fd_targets(srv.pid))

        # Out of fds with connections pending: no busy loop, no growth.
        cpu0, t0 = cpu_seconds(srv.pid), time.monotonic()
        fds = []
        while time.monotonic() - t0 < 2.0:
            fds.append(fd_count(srv.pid))
            time.sleep(0.1)
        cpu = cpu_seconds(srv.pid) - cpu0
        wall = time.monotonic() - t0
        print(f"\nEMFILE: {tunnels} tunnels, CPU {cpu:.3f}s in {wall:.1f}s, "
              f"fds {min(fds)}..{max(fds)} (limit {NOFILE}, baseline {baseline} + "
              f"{base_pipes} pipe ends)")
        assert cpu < 0.5, f"server burnt {cpu:.2f}s CPU in {wall:.1f}s while out of fds"
        assert max(fds) <= NOFILE
        assert srv.alive()

        # The tunnels made before still work.
        for s in clients[:tunnels]:
            echo_ok(s, b"alive")
        # Free everything: the descriptors go back to the baseline, then a
        # new client is served. (Not the other way round: until the server
        # has seen the closes, the budget is still spent and a new client is
        # refused at once, as it should be.)
        closes_all(clients)
        waiting.close()
        settle_fd_count(srv.pid, scaled(5), baseline, count=other_fds, what="non-pipe fd count")
        with open_tunnel(srv, *echo.addr) as s:
            echo_ok(s, b"served once load is gone")
        pipes = fd_split(srv.pid)[0]
        assert pipes <= 2 * POOLED_PIPES_PER_WORKER * 2, f"{pipes} idle pipe ends"
        with open_tunnel(srv, *echo.addr) as s:
            echo_ok(s, b"recovered")
    finally:
        closes_all(clients)
        if waiting:
            waiting.close()
