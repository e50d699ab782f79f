"""Dante's SOCKS client (libdsocks, socksify) and server (sockd) with GSS-API.

Debian's dante-client and dante-server are built without GSS-API, so both
are built here from Debian's own source package (`apt-get source dante`
through a private sources list; configure finds MIT Kerberos), once, and
cached under build/dante: later runs reuse the installed tree."""
import os
import shutil
import subprocess
from pathlib import Path

from harness import scaled

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "dante"
INST = CACHE / "inst"
LIB = INST / "lib" / "libdsocks.so"
SOCKD = INST / "sbin" / "sockd"
SOURCES = "deb-src http://deb.debian.org/debian bookworm main\n"


def _run(argv, cwd, log):
    with open(log, "ab") as f:
        r = subprocess.run(argv, cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                           timeout=scaled(1800))
    assert r.returncode == 0, f"{' '.join(map(str, argv))} failed, see {log}"


def build():
    """The installed tree (building it the first time)."""
    if LIB.exists() and SOCKD.exists():
        return INST
    work = CACHE / "work"
    shutil.rmtree(work, ignore_errors=True)
    (work / "apt" / "lists" / "partial").mkdir(parents=True)
    (work / "apt" / "cache" / "archives" / "partial").mkdir(parents=True)
    (work / "apt" / "sources.list").write_text(SOURCES)
    log = work / "build.log"
    apt = ["apt-get", "-q", "-o", f"Dir::Etc::SourceList={work}/apt/sources.list",
           "-o", "Dir::Etc::SourceParts=/nonexistent", "-o", f"Dir::State::Lists={work}/apt/lists",
           "-o", f"Dir::Cache={work}/apt/cache"]
    _run(apt + ["update"], work, log)
    _run(apt + ["source", "--download-only", "dante"], work, log)
    dsc = next(work.glob("dante_*.dsc"))
    _run(["dpkg-source", "-x", dsc.name, "src"], work, log)
    _run(["./configure", f"--prefix={INST}", "--without-pam", "--without-bsdauth",
          "--without-upnp", "--without-ldap", "--without-libwrap",
          "--disable-dependency-tracking"], work / "src", log)
    text = (work / "src" / "include" / "autoconf.h").read_text()
    assert "#define HAVE_GSSAPI 1" in text, "configure did not find GSS-API"
    # The patches dpkg-source applied are newer than the generated files:
    # keep make from running the autotools, which are not installed.
    noauto = ["ACLOCAL=true", "AUTOMAKE=true", "AUTOCONF=true", "AUTOHEADER=true"]
    _run(["make", "-j2"] + noauto, work / "src", log)
    _run(["make", "install"] + noauto, work / "src", log)
    assert LIB.exists() and SOCKD.exists()
    return INST


def client_conf(path, port, enctype, log):
    """socks.conf routing everything through socks5d at 127.0.0.1:port."""
    compat = "clientcompatibility: necgssapi\n" if enctype == "clear" else ""
    Path(path).write_text(f"""logoutput: {log}
route {{
    from: 0.0.0.0/0 to: 0.0.0.0/0 via: 127.0.0.1 port = {port}
    proxyprotocol: socks_v5
    method: gssapi
    gssapi.servicename: rcmd
    gssapi.enctype: {enctype}
    {compat}
}}
""")


def socksify_env(conf):
    """Environment running a program through libdsocks. On loopback Dante
    adds routes for the local networks and goes direct unless told not to."""
    return dict(os.environ, LD_PRELOAD=str(LIB), SOCKS_CONF=str(conf),
                SOCKS_AUTOADD_LANROUTES="no")


class Sockd:
    """Dante's server with GSS-API on a free loopback port: every level
    allowed, NEC clients too, the keytab given."""

    def __init__(self, workdir, keytab):
        from harness import free_port
        self.workdir = Path(workdir)
        self.port = free_port()
        self.addr = ("127.0.0.1", self.port)
        self.log_path = self.workdir / "sockd.log"
        conf = self.workdir / "sockd.conf"
        conf.write_text(f"""logoutput: {self.log_path}
internal: 127.0.0.1 port = {self.port}
external: 127.0.0.1
socksmethod: gssapi
clientmethod: none
user.privileged: root
user.unprivileged: root
client pass {{
    from: 127.0.0.0/8 to: 0.0.0.0/0
    gssapi.keytab: FILE:{keytab}
    gssapi.servicename: rcmd
    gssapi.enctype: clear integrity confidentiality
    clientcompatibility: necgssapi
}}
socks pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}
""")
        self.proc = subprocess.Popen([str(SOCKD), "-f", str(conf), "-N", "1"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.workdir / "sockd.stderr", "wb"))

    def wait_ready(self):
        import socket
        from harness import wait_until

        def up():
            assert self.proc.poll() is None, self.log()
            try:
                socket.create_connection(self.addr, timeout=0.5).close()
                return True
            except OSError:
                return False
        wait_until(up, scaled(10), what="sockd to listen")
        return self

    def log(self):
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(scaled(5))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
