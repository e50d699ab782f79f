"""Fixtures for the socks5d integration tests (see harness.py).

SOCKS5D_BIN selects the binary (default: bin/socks5d of this repo). A binary
whose path contains "asan" gets longer deadlines."""
import os
import shutil
import subprocess

import pytest

import harness
from harness import BIN, USERS, EchoServer, HTTPServers, NetNS, Socks5d, Target, scaled


def pytest_report_header(config):
    return f"socks5d under test: {BIN} (deadline factor {harness.SLOW:g})"


@pytest.fixture(scope="session")
def socks5d_bin():
    if not os.access(BIN, os.X_OK):
        pytest.fail(f"SOCKS5D_BIN {BIN} is not an executable: run `make` first")
    return BIN


@pytest.fixture(scope="session")
def users_file(socks5d_bin, tmp_path_factory):
    """A users file made by `socks5d passwd`, one line per user in USERS."""
    path = tmp_path_factory.mktemp("users") / "users"
    lines = []
    for name, password in USERS.items():
        r = subprocess.run([socks5d_bin, "passwd", name], input=password + "\n",
                           capture_output=True, text=True, timeout=scaled(10))
        assert r.returncode == 0, r.stderr
        assert not [m for m in harness.SANITIZER_MARKERS if m in r.stderr], r.stderr
        line = r.stdout.strip()
        assert line.startswith(f"{name}:$y$"), line
        lines.append(line)
    path.write_text("# made by socks5d passwd\n" + "\n".join(lines) + "\n")
    return str(path)


def _check_server(srv, errors):
    if srv.proc is None:
        return
    if srv.returncode is None:
        if srv.alive():
            try:
                srv.stop(scaled(5) + 3)
            except AssertionError as e:
                errors.append(f"{' '.join(srv.argv)}: {e}")
                srv.kill()
                srv.returncode = "killed"
        else:
            srv.returncode = srv.proc.returncode
    if srv.returncode != 0 and not srv.start_failed:
        errors.append(f"{' '.join(srv.argv)}: exit code {srv.returncode} after SIGTERM "
                      f"(expected 0)")
    reports = srv.sanitizer_reports()
    if reports:
        errors.append(f"{' '.join(srv.argv)}: sanitizer reported {reports}")
    if errors:
        errors.append(f"--- stderr of pid {srv.pid} ---\n{srv.log()[-20000:]}")


@pytest.fixture
def socks5d(socks5d_bin, tmp_path):
    """Factory: socks5d(*args, listen=[...], netns=NetNS) starts a server
    (on a free 127.0.0.1 port unless `listen` is given) and returns it once
    it listens. At teardown each server still running gets SIGTERM and must
    exit 0 promptly; the test fails if its stderr holds a sanitizer report.
    A test that stops a server itself sets srv.returncode (srv.stop() does),
    and must assert on it."""
    servers = []

    def start(*args, listen=None, netns=None, grace="2s", ready=None):
        args = list(args)
        # Teardown must not wait out the default 10 s grace for a session a
        # failing test left open.
        if grace and "--shutdown-grace" not in args:
            args += ["--shutdown-grace", grace]
        srv = Socks5d(args, tmp_path, listen=listen, netns=netns, binary=socks5d_bin)
        servers.append(srv)
        return srv.start(ready)

    yield start
    errors = []
    for srv in servers:
        _check_server(srv, errors)
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


@pytest.fixture(scope="session")
def http_servers():
    s = HTTPServers()
    yield s
    s.close()


@pytest.fixture(scope="session")
def echo():
    s = EchoServer("127.0.0.1")
    yield s
    s.close()


@pytest.fixture(scope="session")
def echo6():
    s = EchoServer("::1")
    yield s
    s.close()


@pytest.fixture
def target():
    t = Target("127.0.0.1")
    yield t
    t.close()


@pytest.fixture
def target6():
    t = Target("::1")
    yield t
    t.close()


@pytest.fixture
def netns():
    """A fresh network namespace with only loopback (needs root and iproute2)."""
    # The suite runs as root (make test installs packages); a missing
    # namespace is a failure, never a skip.
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.fail("network namespaces need root and iproute2 (ip)")
    try:
        ns = NetNS()
    except subprocess.CalledProcessError as e:
        pytest.fail(f"cannot create a network namespace here: {e.stderr!r}")
    yield ns
    ns.close()


# What servers started by the tests inherit: the realm's configuration and
# a replay cache directory of its own. Keytabs and credential caches are
# always named explicitly, so no other test sees them.
KRB5_ENV = ("KRB5_CONFIG", "KRB5RCACHEDIR")


@pytest.fixture(scope="session")
def realm(tmp_path_factory):
    """A throwaway MIT KDC (gss_support.Realm) with tickets for alice and bob,
    and the process environment pointed at it (servers and clients started
    by the tests inherit it), restored at the end."""
    import gss_support
    r = gss_support.Realm(tmp_path_factory.mktemp("krb5")).create()
    saved = {k: os.environ.get(k) for k in KRB5_ENV}
    os.environ.update({k: r.env[k] for k in KRB5_ENV})
    r.alice = r.kinit("alice")
    r.bob = r.kinit("bob")
    yield r
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    r.close()
