"""`socks5d -t` finds what the start would refuse (exit 2, the cause named)
and warns about what can never match (exit 0, file:line), with the real
binary. Relative paths resolve against the file that names them."""
import os
import re
import shutil
import subprocess
from pathlib import Path

from harness import SANITIZER_MARKERS, free_port, scaled


def run(binary, *args, cwd=None, prefix=()):
    r = subprocess.run([*prefix, binary, *args], capture_output=True, text=True, cwd=cwd,
                       stdin=subprocess.DEVNULL, timeout=scaled(20))
    reports = [m for m in SANITIZER_MARKERS if m in r.stderr]
    assert not reports, f"sanitizer report from socks5d {' '.join(args)}:\n{r.stderr}"
    return r


def check(binary, conf, *args, **kw):
    return run(binary, "-t", "-c", str(conf), *args, **kw)


def ok(r):
    assert r.returncode == 0 and "configuration OK" in r.stdout, (r.returncode, r.stdout, r.stderr)
    return r


def refused(r, *causes):
    assert r.returncode == 2 and "configuration OK" not in r.stdout, (r.returncode, r.stdout,
                                                                      r.stderr)
    for cause in causes:
        assert cause in r.stderr, (cause, r.stderr)
    return r


def test_rules_naming_users_absent_from_the_users_file_are_warned_about(socks5d_bin, users_file,
                                                                         tmp_path):
    conf = tmp_path / "s.conf"
    conf.write_text(f"listen 127.0.0.1:1\nusers {users_file}\n"
                    "allow user alice,dave\n# a comment\ndeny user erin cmd bind\n")
    r = ok(check(socks5d_bin, conf))
    assert f"{conf}:3: warning: rule names user dave, who is not in {users_file}" in r.stderr
    assert f"{conf}:5: warning: rule names user erin" in r.stderr
    assert "user alice" not in r.stderr  # alice is in the file
    r = ok(check(socks5d_bin, conf, "--rule", "allow user bob"))  # the command line's rules
    assert r.stderr == "", r.stderr
    r = ok(check(socks5d_bin, conf, "--auth", "none", "--rule", "allow user bob"))
    assert "(command line):1: warning: rule names user bob but auth does not offer userpass" \
        in r.stderr, r.stderr


def test_user_rules_without_a_users_file_are_warned_about(socks5d_bin, tmp_path):
    conf = tmp_path / "s.conf"
    conf.write_text("listen 127.0.0.1:1\nallow user any\nallow user carol to example.com\n")
    r = ok(check(socks5d_bin, conf))
    assert f"{conf}:2: warning: rule names user any but there is no users file" in r.stderr
    assert f"{conf}:3: warning: rule names user carol but there is no users file" in r.stderr
    r = ok(check(socks5d_bin, conf, "--rule", "deny user mallory"))
    assert "(command line):1: warning: rule names user mallory" in r.stderr, r.stderr


def test_a_directory_named_by_c_or_include_is_refused(socks5d_bin, tmp_path):
    refused(run(socks5d_bin, "-t", "-c", str(tmp_path)), f"config file {tmp_path}: is a directory")
    (tmp_path / "conf.d").mkdir()
    conf = tmp_path / "s.conf"
    conf.write_text("listen 127.0.0.1:1\ninclude conf.d\n")
    refused(check(socks5d_bin, conf), f"{conf}:2:9: include {tmp_path}/conf.d: is a directory")


def test_a_run_user_that_does_not_exist_is_refused(socks5d_bin, tmp_path):
    conf = tmp_path / "s.conf"
    conf.write_text("listen 127.0.0.1:1\nuser no-such-user-socks5d\n")
    refused(check(socks5d_bin, conf), "user no-such-user-socks5d: no such user")
    conf.write_text("listen 127.0.0.1:1\nuser nobody\n")
    ok(check(socks5d_bin, conf))


def as_root():
    """Runs the binary as root: directly when the suite runs as root (CI, a
    chroot, where user namespaces may be refused), else as uid 0 of a user
    namespace. The root check is the same either way."""
    if os.geteuid() == 0:
        return ()
    assert shutil.which("unshare"), "unshare (util-linux) is needed"
    return ("unshare", "--user", "--map-root-user")


def test_root_beyond_loopback_is_refused_as_the_start_refuses_it(socks5d_bin, users_file,
                                                                 tmp_path):
    conf = tmp_path / "s.conf"
    conf.write_text(f"listen 0.0.0.0:{free_port()}\nusers {users_file}\n")
    r = refused(check(socks5d_bin, conf, prefix=as_root()), "refusing to run as root with a "
                "listener on 0.0.0.0")
    # The first way out named is the one the packaged unit takes, so `-t`
    # run by root against the unit's file does not send anyone to add `user`.
    assert "start socks5d as an unprivileged user (the packaged unit does" in r.stderr
    ok(check(socks5d_bin, conf, "--allow-root", prefix=as_root()))
    ok(check(socks5d_bin, conf, "--user", "nobody", prefix=as_root()))
    ok(check(socks5d_bin, conf, "-l", "127.0.0.1:1", prefix=as_root()))  # loopback is fine
    start = run(socks5d_bin, "-c", str(conf), prefix=as_root())  # the start agrees
    assert start.returncode == 2 and "refusing to run as root" in start.stderr, start.stderr
    assert r.stderr.splitlines()[-1].removeprefix("socks5d: ") in start.stderr


def test_a_log_file_in_a_missing_directory_is_refused_by_check_and_start(socks5d_bin, tmp_path):
    conf = tmp_path / "s.conf"
    conf.write_text("listen 127.0.0.1:1\nerror-log ./gone/error.log\naccess-log /nonexistent-dir/a\n")
    r = refused(check(socks5d_bin, conf),
                f"error-log {tmp_path}/gone/error.log: directory {tmp_path}/gone: No such file",
                "access-log /nonexistent-dir/a: directory /nonexistent-dir: No such file")
    assert r.stderr.count("No such file") == 2  # both at once
    start = run(socks5d_bin, "-c", str(conf), "-l", f"127.0.0.1:{free_port()}")
    assert start.returncode == 2 and f"directory {tmp_path}/gone" in start.stderr, start.stderr
    (tmp_path / "gone").mkdir()
    conf.write_text("listen 127.0.0.1:1\nerror-log ./gone/error.log\n")
    ok(check(socks5d_bin, conf))
    assert not (tmp_path / "gone" / "error.log").exists()  # -t opens no log file


def test_users_file_lines_whose_hash_cannot_match_are_warned_about(socks5d_bin, users_file,
                                                                    tmp_path):
    alice, bob = Path(users_file).read_text().split("\n")[1:3]
    users = tmp_path / "users"
    users.write_text(f"{alice}\n{bob[:-5]}\ncarol:$1$abc$cut\ndave:$6$saltsalt$short\n")
    r = ok(run(socks5d_bin, "-t", "-l", "127.0.0.1:1", "--users", str(users)))
    for line, name in ((2, "bob"), (3, "carol"), (4, "dave")):
        assert re.search(rf"^{users}:{line}: warning: user {name}: crypt\(3\) cannot match",
                         r.stderr, re.M), (name, r.stderr)
    assert "user alice" not in r.stderr, r.stderr


def test_relative_paths_resolve_against_the_file_that_names_them(socks5d_bin, users_file,
                                                                 tmp_path):
    etc = tmp_path / "etc"
    (etc / "conf.d").mkdir(parents=True)
    (etc / "logs").mkdir()
    shutil.copy(users_file, etc / "users")
    (etc / "conf.d" / "auth.conf").write_text("users ../users\n")
    conf = etc / "socks5d.conf"
    conf.write_text("listen 127.0.0.1:1\ninclude conf.d/auth.conf\naccess-log ./logs/a.log\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for c in (str(conf), os.path.relpath(conf, elsewhere)):  # -c itself: from the working dir
        r = run(socks5d_bin, "-T", "-c", c, cwd=elsewhere)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        users = next(l for l in lines if l.startswith("users "))
        access = next(l for l in lines if l.startswith("access-log "))
        assert os.path.samefile(elsewhere / users.split(" ", 1)[1], etc / "users"), users
        assert Path(elsewhere / access.split(" ", 1)[1]).parent.samefile(etc / "logs"), access
    # On the command line, a relative path is relative to the working directory.
    r = run(socks5d_bin, "-t", "-l", "127.0.0.1:1", "--users", "users", cwd=etc)
    assert r.returncode == 0, r.stderr
