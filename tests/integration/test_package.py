"""The Debian package and the install layout: `dpkg-buildpackage` on a copy
of the tree, lintian on the result, then the package installed into a clean
Debian 12 root (made by mmdebstrap from this machine's apt mirror, cached
under build/pkgtest/) where `socks5d -t` passes and a CONNECT goes through
the installed server, run as the system user the package creates.

The package is built from the source tree, not from SOCKS5D_BIN: the built
packages are cached by the hash of the tree, so the suite's later runs
(ASan, coverage) reuse them."""
import hashlib
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from harness import REPO, Socks5d, echo_roundtrip, free_port, open_tunnel, scaled

CACHE = REPO / "build" / "pkgtest"
ROOT_PACKAGES = ["libc-ares2", "libcrypt1", "systemd-standalone-sysusers"]
EXCLUDE = {".git", "build", "bin", "node_modules", "__pycache__", ".pytest_cache"}
CONF = "/etc/socks5d/socks5d.conf"


def run(argv, timeout, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, argv))}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def tree_files():
    for dirpath, dirnames, filenames in os.walk(REPO):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDE)
        for f in sorted(filenames):
            p = Path(dirpath) / f
            if not p.is_symlink():
                yield p


def tree_hash():
    h = hashlib.sha256()
    for p in tree_files():
        h.update(str(p.relative_to(REPO)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def debian_mirrors():
    """The bookworm archives this machine's apt uses (deb822 or one-line)."""
    uris = []
    for f in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")):
        for stanza in f.read_text().split("\n\n"):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
            if "bookworm" in fields.get("Suites", "").split() and "deb" in fields.get("Types", ""):
                uris += fields.get("URIs", "").split()
    for f in [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt").glob("sources.list.d/*.list")):
        if f.exists():
            uris += re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", f.read_text(), re.M)
    assert uris, "no bookworm archive in this machine's apt sources"
    return uris[0]


@pytest.fixture(scope="session")
def clean_root_base():
    """A minimal Debian 12 root (essential packages and what socks5d's
    Depends name), made once and kept under build/pkgtest/."""
    base = CACHE / ("root-bookworm-" + hashlib.sha256(" ".join(ROOT_PACKAGES).encode()).hexdigest()[:8])
    if not (base / "usr/bin/dpkg").exists():
        base.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(f"{base}.{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        # No mounts: maintainer scripts of these packages need no /proc, and
        # CI may run where mounting is not allowed.
        run(["mmdebstrap", "--mode=root", "--variant=essential", "--skip=chroot/mount",
             "--include=" + ",".join(ROOT_PACKAGES), "bookworm", str(tmp), debian_mirrors()],
            timeout=240)
        try:
            tmp.rename(base)
        except OSError:  # another run got there first
            shutil.rmtree(tmp, ignore_errors=True)
    return base


@pytest.fixture(scope="session")
def built_package(tmp_path_factory):
    """The .changes and .deb files built by dpkg-buildpackage -us -uc from a
    copy of the tree (cached by the tree's hash)."""
    out = CACHE / ("build-" + tree_hash())
    if not out.exists():
        # Built aside and renamed into place: two runs at once (the release
        # and a sanitizer suite) never share a half-built directory.
        tmp = CACHE / f"{out.name}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        src = tmp / "socks5d"
        for p in tree_files():
            dst = src / p.relative_to(REPO)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dst)
        env = dict(os.environ, DEB_BUILD_OPTIONS=f"parallel={os.cpu_count() or 1}")
        run(["dpkg-buildpackage", "-us", "-uc"], cwd=src, timeout=300, env=env)
        shutil.rmtree(src)
        try:
            tmp.rename(out)
        except OSError:  # another run got there first
            shutil.rmtree(tmp, ignore_errors=True)
        for old in CACHE.glob("build-*"):  # packages of earlier trees
            if old != out and "." not in old.name:
                shutil.rmtree(old, ignore_errors=True)
    return out


@pytest.fixture(scope="session")
def installed_root(clean_root_base, built_package, tmp_path_factory):
    """A copy of the clean root with the package installed by dpkg."""
    root = tmp_path_factory.mktemp("pkgroot") / "root"
    run(["cp", "-a", str(clean_root_base), str(root)], timeout=120)
    deb = next(built_package.glob("socks5d_*_amd64.deb"), None) or \
        next(p for p in built_package.glob("socks5d_*.deb"))
    shutil.copy(deb, root / "tmp" / "socks5d.deb")
    run(["chroot", str(root), "dpkg", "-i", "/tmp/socks5d.deb"], timeout=60)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def chroot(root, *argv, timeout=30):
    return subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True,
                          timeout=timeout)


def test_lintian_is_clean(built_package):
    changes = next(built_package.glob("*.changes"))
    r = subprocess.run(["lintian", "--pedantic", "-I", str(changes)], capture_output=True,
                       text=True, timeout=120)
    tags = [l for l in (r.stdout + r.stderr).splitlines() if re.match(r"^[EWIPX]: ", l)]
    assert r.returncode == 0 and not tags, "\n".join(tags) or r.stderr


def test_binary_is_stripped_with_a_dbgsym_package(built_package, tmp_path):
    assert list(built_package.glob("socks5d-dbgsym_*.deb")), "no -dbgsym package"
    deb = next(built_package.glob("socks5d_*.deb"))
    run(["dpkg-deb", "-x", str(deb), str(tmp_path)], timeout=30)
    sections = run(["readelf", "-S", "-W", str(tmp_path / "usr/sbin/socks5d")], timeout=10).stdout
    assert ".text" in sections and ".symtab" not in sections and ".debug_info" not in sections


def test_package_installs_user_units_and_config(installed_root):
    root = installed_root
    r = chroot(root, "getent", "passwd", "socks5d")
    assert r.returncode == 0 and r.stdout.startswith("socks5d:"), r.stderr
    uid = int(r.stdout.split(":")[2])
    assert 0 < uid < 1000, r.stdout
    unit = (root / "lib/systemd/system/socks5d.service").read_text()
    assert "ExecStart=/usr/sbin/socks5d -c /etc/socks5d/socks5d.conf\n" in unit
    reloads = re.findall(r"^ExecReload=(.*)$", unit, re.M)
    assert reloads == ["/usr/sbin/socks5d -t -c /etc/socks5d/socks5d.conf",
                       "/bin/kill -HUP $MAINPID"], reloads
    assert re.search(r"^User=socks5d$", unit, re.M)
    assert (root / "lib/systemd/system/socks5d.socket").exists()
    assert (root / "usr/lib/sysusers.d/socks5d.conf").exists()
    assert "kill-whom=main --signal=USR1 socks5d.service" in \
        (root / "etc/logrotate.d/socks5d").read_text()
    r = subprocess.run(["logrotate", "-d", "-s", str(root / "tmp/logrotate.state"),
                        str(root / "etc/logrotate.d/socks5d")], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and "error" not in r.stderr.lower(), r.stderr
    for man in ("usr/share/man/man8/socks5d.8.gz", "usr/share/man/man5/socks5d.conf.5.gz"):
        assert (root / man).exists(), man
    assert (root / CONF.lstrip("/")).read_bytes() == \
        (root / "usr/share/socks5d/socks5d.conf.example").read_bytes()
    r = chroot(root, "/usr/sbin/socks5d", "-t", "-c", CONF)
    assert r.returncode == 0, r.stdout + r.stderr


def test_installed_server_relays_a_connect_and_upgrade_keeps_the_config(installed_root, echo):
    root = installed_root
    port = free_port()
    conf = root / CONF.lstrip("/")
    # The operator's edit, which a reinstall must leave alone.
    conf.write_text(conf.read_text().replace("listen 127.0.0.1:1080", f"listen 127.0.0.1:{port}"))
    edited = conf.read_text()
    run(["chroot", str(root), "dpkg", "-i", "/tmp/socks5d.deb"], timeout=60)
    assert conf.read_text() == edited, "reinstalling the package changed the configuration"
    assert chroot(root, "/usr/sbin/socks5d", "-t", "-c", CONF).returncode == 0

    class InRoot:
        exec_prefix = ["chroot", "--userspec=socks5d:socks5d", str(root)]

        @staticmethod
        def socket(family):
            return socket.socket(family, socket.SOCK_STREAM)

    srv = Socks5d(["-c", CONF, "--shutdown-grace", "1s"], installed_root.parent,
                  listen=[f"127.0.0.1:{port}"], netns=InRoot, binary="/usr/sbin/socks5d")
    srv.start()
    try:
        assert Path(f"/proc/{srv.pid}/root").resolve() == root.resolve()
        uid = int(chroot(root, "id", "-u", "socks5d").stdout)
        status = Path(f"/proc/{srv.pid}/status").read_text()
        assert re.search(rf"^Uid:\s+{uid}\s", status, re.M), status
        s = open_tunnel(srv, *echo.addr)
        assert echo_roundtrip(s, b"through the packaged socks5d") == b"through the packaged socks5d"
        s.close()
    finally:
        code = srv.stop(scaled(5))
    assert code == 0, srv.log()


def test_make_install_writes_the_unit_for_its_prefix(tmp_path):
    for prefix in ("/usr", "/opt/socks5d"):
        dest = tmp_path if prefix == "/usr" else tmp_path / prefix.strip("/").replace("/", "_")
        run(["make", "-s", "-C", str(REPO), "install", f"PREFIX={prefix}", f"DESTDIR={dest}"],
            timeout=300)
        unit = (dest / prefix.lstrip("/") / "lib/systemd/system/socks5d.service").read_text()
        execs = re.findall(r"^Exec\w+=(\S+)", unit, re.M)
        assert execs == [f"{prefix}/sbin/socks5d", f"{prefix}/sbin/socks5d", "/bin/kill"], execs
        assert (dest / prefix.lstrip("/") / "sbin/socks5d").exists()
        assert (dest / prefix.lstrip("/") / "lib/sysusers.d/socks5d.conf").exists()
    # systemd accepts the unit, its commands re-rooted where DESTDIR put them.
    binary = f"{tmp_path}/usr/sbin/socks5d"
    unit = tmp_path / "socks5d.service"
    unit.write_text((tmp_path / "usr/lib/systemd/system/socks5d.service").read_text()
                    .replace("/usr/sbin/socks5d", binary))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_runs_as_non_root_with_the_config_mounted():
    text = (REPO / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    entry = re.findall(r"^ENTRYPOINT\s+(.*)$", text, re.M)
    assert entry and '"/usr/sbin/socks5d"' in entry[-1] and '"/etc/socks5d/socks5d.conf"' in \
        entry[-1], entry
    assert re.search(r'^VOLUME\s+\["/etc/socks5d"\]', text, re.M)
    # The image builds with the same Makefile install as the package.
    assert re.search(r"make .*install .*PREFIX=/usr", text)
