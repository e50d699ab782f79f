"""Upstream credentials from a file the configuration names
(`upstream-credentials FILE`): a route names the hop with its user only
(`socks5://carol@host:port`), the file holds the password. The file is
refused when others may read it, `-t` checks it, a reload reads it again,
and the password appears in no log line, `-T` output, metrics or /sessions
output, also when the upstream refuses the login."""
import json
import os
import signal
import subprocess

import pytest

from harness import free_port, scaled, wait_until
from ops_support import curl
from security_support import ask, ask_rep, echo_ok

PASSWORD = "Up5tream-pw-q7Zx"  # unique: found only if leaked
WRONG = "Wr0ng-pw-k3Jv"
REP_NOT_ALLOWED = 2


@pytest.fixture
def far(socks5d, socks5d_bin, tmp_path):
    """A socks5d upstream that wants carol's login."""
    r = subprocess.run([socks5d_bin, "passwd", "carol"], input=PASSWORD + "\n",
                       capture_output=True, text=True, timeout=scaled(10))
    assert r.returncode == 0, r.stderr
    users = tmp_path / "far-users"
    users.write_text(r.stdout)
    return socks5d("--auth", "userpass", "--users", str(users))


def creds_file(tmp_path, port, password, mode=0o600):
    path = tmp_path / "upstream.creds"
    path.write_text(f"# upstream proxies\nsocks5://carol@127.0.0.1:{port}  {password}\n")
    os.chmod(path, mode)
    return path


def near_conf(tmp_path, far_port, mport=None):
    conf = tmp_path / "near.conf"
    lines = ["auth none", "log-level debug", "upstream-credentials upstream.creds",
             f"route via socks5://carol@127.0.0.1:{far_port}"]
    if mport:
        lines.append(f"metrics 127.0.0.1:{mport}")
    conf.write_text("\n".join(lines) + "\n")
    return conf


def check(socks5d_bin, conf, flag="-t"):
    return subprocess.run([socks5d_bin, flag, "-c", str(conf)], capture_output=True, text=True,
                          timeout=scaled(10))


def test_a_chain_takes_the_password_from_the_file_and_shows_it_nowhere(socks5d, socks5d_bin,
                                                                       far, echo, tmp_path):
    creds_file(tmp_path, far.port, PASSWORD)
    mport = free_port()
    conf = near_conf(tmp_path, far.port, mport)
    near = socks5d("-c", str(conf))
    rep, _, _, s = ask(near, "127.0.0.1", echo.port)
    with s:
        assert rep == 0
        echo_ok(s)
        # While the tunnel is open: the session list and the metrics.
        code, listed = curl(f"http://127.0.0.1:{mport}/sessions")
        assert code == 200 and json.loads(listed)["sessions"]
        code, metrics = curl(f"http://127.0.0.1:{mport}/metrics")
        assert code == 200 and b"socks5d_" in metrics
    (fline,) = far.wait_access(1)
    assert fline["user"] == "carol" and fline["rep"] == "0"
    dump = check(socks5d_bin, conf, "-T")
    assert dump.returncode == 0, dump.stderr
    assert f"route via socks5://carol@127.0.0.1:{far.port}" in dump.stdout
    near.wait_access(1)
    for text in (near.log(), listed.decode(), metrics.decode(), dump.stdout + dump.stderr):
        assert PASSWORD not in text


def test_a_refused_login_is_passed_on_and_the_password_stays_secret(socks5d, far, echo,
                                                                    tmp_path):
    creds_file(tmp_path, far.port, WRONG)
    near = socks5d("-c", str(near_conf(tmp_path, far.port)))
    assert ask_rep(near, "127.0.0.1", echo.port) == REP_NOT_ALLOWED
    (line,) = near.wait_access(1)
    assert line["rep"] == "2" and line["error"] == "upstream refused the credentials"
    assert WRONG not in near.log() and WRONG not in far.log()


def test_a_reload_reads_the_file_again(socks5d, far, echo, tmp_path):
    creds = creds_file(tmp_path, far.port, WRONG)
    near = socks5d("-c", str(near_conf(tmp_path, far.port)))
    assert ask_rep(near, "127.0.0.1", echo.port) == REP_NOT_ALLOWED
    creds.write_text(f"socks5://carol@127.0.0.1:{far.port} {PASSWORD}\n")
    n = near.log().count("configuration reloaded")
    near.signal(signal.SIGHUP)
    wait_until(lambda: near.log().count("configuration reloaded") > n, scaled(10),
               what="the reload")
    rep, _, _, s = ask(near, "127.0.0.1", echo.port)
    with s:
        assert rep == 0
        echo_ok(s)


def test_a_file_others_can_read_is_refused_by_t_start_and_reload(socks5d, socks5d_bin, far,
                                                                  echo, tmp_path):
    creds = creds_file(tmp_path, far.port, PASSWORD, mode=0o644)
    conf = near_conf(tmp_path, far.port)
    r = check(socks5d_bin, conf)
    assert r.returncode == 2
    assert "upstream-credentials" in r.stderr and "mode 0644" in r.stderr
    assert PASSWORD not in r.stdout + r.stderr
    os.chmod(creds, 0o600)
    assert check(socks5d_bin, conf).returncode == 0
    near = socks5d("-c", str(conf))
    os.chmod(creds, 0o604)
    near.signal(signal.SIGHUP)
    wait_until(lambda: "mode 0604" in near.log(), scaled(10), what="the refused reload")
    # The running configuration stays: its password still works.
    rep, _, _, s = ask(near, "127.0.0.1", echo.port)
    with s:
        assert rep == 0
    assert PASSWORD not in near.log()


def test_t_names_a_hop_without_a_password(socks5d_bin, far, tmp_path):
    creds_file(tmp_path, far.port + 1 if far.port < 65535 else 1, PASSWORD)
    conf = near_conf(tmp_path, far.port)
    r = check(socks5d_bin, conf)
    assert r.returncode == 2
    assert (f"near.conf:4: route hop socks5://carol@127.0.0.1:{far.port} has no password in "
            "upstream-credentials") in r.stderr
    # A user name alone is no secret: the command line may name it, and
    # without a file the message says where a password can come from.
    r = subprocess.run([socks5d_bin, "-t", "--route", "via socks5://carol@127.0.0.1:1"],
                       capture_output=True, text=True, timeout=scaled(10))
    assert r.returncode == 2 and "an upstream-credentials file" in r.stderr
