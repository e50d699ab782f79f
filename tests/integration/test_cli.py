"""The command line an operator types: -v / -V / --verbose, -T (the
effective configuration, read back by -t), `socks5d passwd` (twice on a
terminal, -f FILE in place) and the bash completion, all against the real
binary."""
import os
import pty
import re
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from harness import SANITIZER_MARKERS, open_tunnel, scaled
from security_support import echo_bulk

REPO = Path(__file__).resolve().parents[2]
COMPLETION = REPO / "packaging" / "socks5d.bash-completion"


def run(binary, *args, input=None, cwd=None):
    r = subprocess.run([binary, *args], capture_output=True, text=True, input=input, cwd=cwd,
                       timeout=scaled(20), stdin=None if input is not None else subprocess.DEVNULL)
    reports = [m for m in SANITIZER_MARKERS if m in r.stderr]
    assert not reports, f"sanitizer report from socks5d {' '.join(args)}:\n{r.stderr}"
    return r


# ---------------------------------------------------------------- -v, -V


def test_short_v_prints_the_version_and_verbose_is_long_only(socks5d_bin, tmp_path):
    for flag in ("-v", "--version"):
        r = run(socks5d_bin, flag)
        assert r.returncode == 0 and re.fullmatch(r"socks5d \d+\.\d+\.\d+\n", r.stdout), r
    conf = tmp_path / "s.conf"
    conf.write_text("listen 127.0.0.1:1\n")
    r = run(socks5d_bin, "-T", "-c", str(conf), "--verbose")
    assert r.returncode == 0 and "log-level debug\n" in r.stdout, r


def test_build_info_names_c_ares_and_says_no_for_what_is_not_built_in(socks5d_bin):
    for flag in ("-V", "--build-info"):
        r = run(socks5d_bin, flag)
        assert r.returncode == 0, r
        lines = r.stdout.splitlines()
        assert re.fullmatch(r"socks5d \d+\.\d+\.\d+", lines[0]), r.stdout
        assert re.fullmatch(r"c-ares: \d+\.\d+\.\d+ \(built with \d+\.\d+\.\d+\)", lines[1]), lines
        assert re.fullmatch(r"krb5: MIT \d+\.\d+(\.\d+)?", lines[2]), lines  # gssapi is built in
        assert "libbpf: no" in lines, lines


# ---------------------------------------------------------------- -T


def test_dump_config_is_read_back_by_check_and_is_a_fixed_point(socks5d_bin, users_file,
                                                                  tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "extra.conf").write_text("Timeout Idle 90s\nrate-limit user alice 10M\n")
    conf = tmp_path / "s.conf"
    conf.write_text(f"""# every kind of value
listen 127.0.0.1:19101
listen [::1]:19102 proxy-protocol advertise 2001:db8::7
proxy-protocol-from 10.0.0.0/8,192.0.2.1
users {users_file}
auth userpass, none
workers 3
include extra.conf
timeout-connect 1500ms
drain-delay 0
max-sessions 1000
udp-ports 40000-40100
no-bind yes
advertise 198.51.100.9
metrics 19103
access-log ./logs/access.log
access-log-format json
allow from 127.0.0.0/8 user alice cmd connect to *.example.com port 443
deny-private
allow from ::1
""")
    first = run(socks5d_bin, "-T", "-c", str(conf))
    assert first.returncode == 0, first.stderr
    out = first.stdout
    for line in ("listen 127.0.0.1:19101", "listen [::1]:19102 proxy-protocol advertise 2001:db8::7",
                 "auth userpass, none", "workers 3", "timeout-idle 90s",
                 "timeout-connect 1500ms", "rate-limit user alice 10485760",
                 "udp-ports 40000-40100", "no-bind yes", "no-udp no", "advertise 198.51.100.9",
                 "metrics 127.0.0.1:19103", f"access-log {tmp_path}/logs/access.log",
                 "access-log-format json", "max-sessions 1000", "deny-private",
                 "allow from 127.0.0.0/8 user alice cmd connect to *.example.com port 443",
                 f"users {users_file}", "proxy-protocol-from 10.0.0.0/8,192.0.2.1"):
        assert f"\n{line}\n" in out, (line, out)
    dumped = tmp_path / "elsewhere" / "dumped.conf"  # another directory: paths must be absolute
    dumped.parent.mkdir()
    dumped.write_text(out)
    check = run(socks5d_bin, "-t", "-c", str(dumped))
    assert check.returncode == 0 and "configuration OK" in check.stdout, check
    again = run(socks5d_bin, "-T", "-c", str(dumped))
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[1:] == out.splitlines()[1:]  # line 0 names the file


def test_dump_config_of_a_bad_file_prints_nothing_and_fails(socks5d_bin, tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("listen 127.0.0.1:1\nno-udp maybe\n")
    r = run(socks5d_bin, "-T", "-c", str(conf))
    assert r.returncode == 2 and r.stdout == "", r
    assert f"{conf}:2:8: 'maybe': expected yes or no" in r.stderr, r.stderr


# ---------------------------------------------------------------- passwd


def verify_login(socks5d, echo, users, name, password):
    srv = socks5d("--users", str(users))
    with open_tunnel(srv, *echo.addr, auth=(name, password)) as s:
        echo_bulk(s, name.encode())


def test_passwd_f_creates_a_0600_file_that_logs_in(socks5d_bin, socks5d, echo, tmp_path):
    users = tmp_path / "users"
    r = run(socks5d_bin, "passwd", "-f", str(users), "carol", input="c4r0l\n")
    assert r.returncode == 0 and r.stdout == "", r
    assert "added user carol" in r.stderr
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    assert re.fullmatch(r"carol:\$y\$\S+\n", users.read_text())
    verify_login(socks5d, echo, users, "carol", "c4r0l")


def test_passwd_f_replaces_in_place_drops_duplicates_and_warns_on_a_world_readable_file(
        socks5d_bin, socks5d, echo, users_file, tmp_path):
    lines = Path(users_file).read_text().splitlines()
    alice = next(l for l in lines if l.startswith("alice:"))
    bob = next(l for l in lines if l.startswith("bob:"))
    users = tmp_path / "users"
    users.write_text(f"# team\n{alice}\n\n{bob}\n  {alice}\n# end")  # a duplicate, no final \n
    users.chmod(0o644)
    r = run(socks5d_bin, "passwd", "-f", str(users), "alice", input="n3w pass\n")
    assert r.returncode == 0, r
    assert "readable by others" in r.stderr and "replaced user alice" in r.stderr, r.stderr
    text = users.read_text().splitlines()
    assert text[0] == "# team" and text[2:] == ["", bob, "# end"], text
    assert text[1].startswith("alice:$y$") and text[1] != alice
    assert stat.S_IMODE(users.stat().st_mode) == 0o640  # others lose read, the group keeps it
    assert not [p for p in tmp_path.iterdir() if p.name != "users"]  # no temporary left
    verify_login(socks5d, echo, users, "alice", "n3w pass")


def test_passwd_f_runs_in_parallel_lose_no_user(socks5d_bin, tmp_path):
    users = tmp_path / "users"
    names = [f"user{i}" for i in range(8)]
    results = {}

    def one(name):
        results[name] = run(socks5d_bin, "passwd", "-f", str(users), name, input="pw\n")

    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(60))
    assert all(results[n].returncode == 0 for n in names), results
    got = sorted(l.split(":")[0] for l in users.read_text().splitlines())
    assert got == names, got
    r = run(socks5d_bin, "-t", "--users", str(users))
    assert r.returncode == 0, r.stderr


def test_passwd_f_refuses_a_symlink_and_leaves_users_with_a_longer_name(socks5d_bin, tmp_path):
    target = tmp_path / "shadow-like"
    target.write_text("root:x\n")
    link = tmp_path / "users"
    link.symlink_to(target)
    r = run(socks5d_bin, "passwd", "-f", str(link), "root", input="pw\n")
    assert r.returncode == 1 and "symbolic links" in r.stderr, r
    assert target.read_text() == "root:x\n" and link.is_symlink()
    users = tmp_path / "plain"
    users.write_text("alice2:$y$keep\nal:$y$old\n")
    r = run(socks5d_bin, "passwd", "-f", str(users), "al", input="pw\n")
    assert r.returncode == 0, r
    lines = users.read_text().splitlines()
    assert lines[0] == "alice2:$y$keep" and lines[1].startswith("al:$y$j") and len(lines) == 2


def passwd_on_a_terminal(binary, args, typed):
    """Runs `socks5d passwd ARGS` with a pseudo-terminal as stdin and types
    the lines in `typed`; returns (exit code, stdout, everything written to
    the terminal)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([binary, "passwd", *args], stdin=slave, stdout=subprocess.PIPE,
                         stderr=slave, text=True)
    os.close(slave)
    seen = b""
    try:
        for line in typed:
            while b": " not in seen.split(b"\n")[-1]:  # wait for the prompt
                chunk = os.read(master, 1024)
                assert chunk, seen
                seen += chunk
            os.write(master, line.encode() + b"\n")
            seen += b"\n"
        out, _ = p.communicate(timeout=scaled(20))
        try:
            while True:
                chunk = os.read(master, 1024)
                if not chunk:
                    break
                seen += chunk
        except OSError:  # EIO: the terminal's other end is closed
            pass
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, out, seen.decode(errors="replace")


def test_passwd_on_a_terminal_asks_twice_and_a_mismatch_changes_nothing(socks5d_bin, tmp_path):
    users = tmp_path / "users"
    users.write_text("# nobody yet\n")
    code, out, tty = passwd_on_a_terminal(socks5d_bin, ["-f", str(users), "dave"],
                                          ["first", "second"])
    assert code == 2 and out == "", (code, out, tty)
    assert "Password: " in tty and "Again: " in tty and "do not match" in tty, tty
    assert "first" not in tty and "second" not in tty  # no echo
    assert users.read_text() == "# nobody yet\n"
    code, out, tty = passwd_on_a_terminal(socks5d_bin, ["dave"], ["same", "same"])
    assert code == 0 and re.fullmatch(r"dave:\$y\$\S+\n", out), (code, out, tty)


# ---------------------------------------------------------------- completion


def complete(line):
    """The words bash completion offers for `line` (the last word being
    completed, possibly empty)."""
    words = line.split(" ")
    script = (f"source {COMPLETION}\n"
              f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
              f"COMP_CWORD={len(words) - 1}\n"
              "_socks5d\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True,
                       text=True, timeout=scaled(10))
    assert r.returncode == 0, r.stderr
    return set(filter(None, r.stdout.split("\n")))


def test_bash_completion_offers_exactly_the_options_of_help(socks5d_bin):
    help_text = run(socks5d_bin, "--help").stdout
    entries = re.findall(r"^  (?:(-\w), |    )(--[\w-]+)( \S+)?", help_text, re.M)
    longs = {e[1] for e in entries}
    shorts = {e[0] for e in entries if e[0]}
    assert len(longs) > 40, entries
    assert complete("socks5d --") == longs
    assert shorts <= complete("socks5d -")
    for short, long, value in entries:
        if value:  # an option that takes a value is never followed by an option
            for name in filter(None, (short, long)):
                assert not any(w.startswith("-") for w in complete(f"socks5d {name} -")), name
    assert complete("socks5d --log-level d") == {"debug"}
    assert complete("socks5d --access-log-format ") == {"logfmt", "json"}
    assert complete("socks5d pas") == {"passwd"}
    assert complete("socks5d passwd -") == {"-f"}


# ---------------------------------------------------------------- messages


def test_start_up_line_counts_one_worker_in_the_singular(socks5d):
    srv = socks5d("--auth", "none", "-w", "1", "--max-sessions", "1")
    assert "(1 worker, max 1 session)" in srv.log(), srv.log()
    two = socks5d("--auth", "none", "-w", "2", "--max-sessions", "2")
    assert "(2 workers, max 2 sessions)" in two.log(), two.log()
