"""GSS-API test bed: a throwaway MIT KDC on loopback and an RFC 1961 client.

The KDC lives in a temporary directory: its own krb5.conf (KRB5_CONFIG),
kdc.conf (KRB5_KDC_PROFILE), database, keytab and replay cache directory; no
system file is read or written. It listens on a free TCP port (clients are
told to use TCP only). `Realm.kinit` gets tickets into per-user credential
caches, which the client names explicitly.

The client is written on python3-gssapi: the tokens are real, only the
RFC 1961 framing is done here, independently of socks5d's parser."""
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import gssapi

from harness import free_port, recv_exact, scaled, wait_until

REALM = "SOCKS5D.TEST"
PASSWORDS = {"alice": "alice-kerberos-pw", "bob": "bob-kerberos-pw", "carol": "carol-kerberos-pw"}
# Principals whose keys go into the service keytab: clients ask for
# rcmd/<host as typed> (RFC 1961 and what curl and Dante use).
SERVICE_PRINCIPALS = ["rcmd/localhost", "rcmd/127.0.0.1"]
# Known to the KDC but absent from socks5d's keytab: a ticket for it is a
# ticket for another service.
OTHER_SERVICE = "host/localhost"
# carol's tickets live this long, and the acceptor tolerates this much skew,
# so a ticket of hers is expired soon after it is made.
SHORT_LIFE_S = 2
CLOCKSKEW_S = 1

KRB5_CONF = """[libdefaults]
    default_realm = {realm}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    rdns = false
    dns_canonicalize_hostname = false
    udp_preference_limit = 1
    forwardable = false
    clockskew = {skew}
    permitted_enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96
[realms]
    {realm} = {{
        kdc = 127.0.0.1:{port}
    }}
[domain_realm]
    localhost = {realm}
    127.0.0.1 = {realm}
"""

KDC_CONF = """[kdcdefaults]
    kdc_listen = 127.0.0.1:{uport}
    kdc_tcp_listen = 127.0.0.1:{port}
[realms]
    {realm} = {{
        database_name = {root}/principal
        key_stash_file = {root}/stash
        acl_file = {root}/kadm5.acl
        max_life = 1h
        max_renewable_life = 0
        supported_enctypes = aes256-cts-hmac-sha1-96:normal
    }}
[logging]
    kdc = FILE:{root}/kdc.log
"""


class Realm:
    """A KDC for REALM with the principals above, a keytab for socks5d and
    the environment (`env`) that points the Kerberos library at all of it."""

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.keytab = str(self.root / "socks5d.keytab")
        self.rcache = self.root / "rcache"
        self.rcache.mkdir(exist_ok=True)
        (self.root / "krb5.conf").write_text(
            KRB5_CONF.format(realm=REALM, port=self.port, skew=CLOCKSKEW_S))
        (self.root / "kdc.conf").write_text(
            KDC_CONF.format(realm=REALM, port=self.port, uport=free_port(), root=self.root))
        (self.root / "kadm5.acl").write_text("")
        self.env = dict(os.environ, KRB5_CONFIG=str(self.root / "krb5.conf"),
                        KRB5_KDC_PROFILE=str(self.root / "kdc.conf"),
                        KRB5RCACHEDIR=str(self.rcache), KRB5_KTNAME=self.keytab,
                        KRB5CCNAME=f"FILE:{self.root}/ccache-default")
        self.proc = None

    def _run(self, argv, stdin=None):
        r = subprocess.run(argv, input=stdin, env=self.env, capture_output=True, text=True,
                           timeout=scaled(30))
        assert r.returncode == 0, f"{' '.join(argv)}: {r.stderr}"
        return r.stdout

    def kadmin(self, query):
        return self._run(["kadmin.local", "-r", REALM, "-q", query])

    def create(self):
        self._run(["kdb5_util", "create", "-s", "-r", REALM, "-P", "master-password-for-tests"])
        for user, pw in PASSWORDS.items():
            self.kadmin(f"addprinc -pw {pw} {user}")
        self.kadmin(f"modprinc -maxlife '{SHORT_LIFE_S} seconds' carol")
        for p in SERVICE_PRINCIPALS + [OTHER_SERVICE]:
            self.kadmin(f"addprinc -randkey {p}")
        for p in SERVICE_PRINCIPALS:
            self.kadmin(f"ktadd -k {self.keytab} {p}")
        self.other_keytab = str(self.root / "other.keytab")
        self.kadmin(f"ktadd -k {self.other_keytab} {OTHER_SERVICE}")
        self.proc = subprocess.Popen(["krb5kdc", "-n", "-r", REALM], env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.root / "kdc.stderr", "wb"))

        def listening():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                assert self.proc.poll() is None, (self.root / "kdc.stderr").read_text()
                return False
        wait_until(listening, scaled(10), what="the KDC to listen")
        return self

    def ccache(self, user):
        return f"FILE:{self.root}/ccache-{user}"

    def kinit(self, user):
        """Fresh tickets for `user` in its own cache; returns the cache name."""
        cc = self.ccache(user)
        self._run(["kinit", "-c", cc, user], stdin=PASSWORDS[user] + "\n")
        return cc

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(scaled(5))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Aborted(Exception):
    """The server sent the RFC 1961 abort message (01 ff)."""


GSS_FLAGS = (gssapi.RequirementFlag.mutual_authentication | gssapi.RequirementFlag.integrity |
             gssapi.RequirementFlag.confidentiality | gssapi.RequirementFlag.replay_detection |
             gssapi.RequirementFlag.out_of_sequence_detection)


def read_gss(sock, mtyp):
    """One RFC 1961 message of type `mtyp`; returns its token. Raises
    Aborted on 01 ff and AssertionError on anything else."""
    head = recv_exact(sock, 2)
    if head == b"\x01\xff":
        raise Aborted()
    assert head == bytes([1, mtyp]), f"expected 01 {mtyp:02x}, got {head.hex()}"
    (n,) = struct.unpack("!H", recv_exact(sock, 2))
    return recv_exact(sock, n)


def gss_msg(mtyp, token):
    return struct.pack("!BBH", 1, mtyp, len(token)) + token


class GssClient:
    """RFC 1961 client on one connected socket."""

    def __init__(self, sock, ccache, service="rcmd@localhost"):
        self.sock = sock
        creds = gssapi.Credentials(usage="initiate", store={"ccache": ccache})
        name = gssapi.Name(service, gssapi.NameType.hostbased_service)
        self.ctx = gssapi.SecurityContext(name=name, creds=creds, usage="initiate",
                                          flags=GSS_FLAGS)
        self.level = None
        self.tokens = []  # what the client sent, for replay tests

    def select_method(self):
        self.sock.sendall(b"\x05\x01\x01")
        assert recv_exact(self.sock, 2) == b"\x05\x01"

    def establish(self):
        """Context establishment (mtyp 1), as many round trips as it takes."""
        token = self.ctx.step()
        while True:
            self.tokens.append(token)
            self.sock.sendall(gss_msg(1, token))
            if self.ctx.complete:
                return
            token = self.ctx.step(read_gss(self.sock, 1))
            if self.ctx.complete:
                return

    def negotiate(self, level, nec=False):
        """Protection-level negotiation (mtyp 2); returns the server's choice."""
        if nec:
            self.sock.sendall(gss_msg(2, bytes([level])))
            answer = read_gss(self.sock, 2)
            assert len(answer) == 1, answer.hex()
            self.level = answer[0]
        else:
            self.sock.sendall(gss_msg(2, self.ctx.wrap(bytes([level]), False).message))
            answer = self.ctx.unwrap(read_gss(self.sock, 2))
            assert len(answer.message) == 1, answer.message.hex()
            self.level = answer.message[0]
        return self.level

    def handshake(self, level=2, nec=False):
        self.select_method()
        self.establish()
        return self.negotiate(level, nec)

    # Per-message protection (mtyp 3), or clear bytes at level 0.

    def send(self, data):
        if self.level == 0:
            self.sock.sendall(data)
            return
        limit = self.ctx.get_wrap_size_limit(65535, self.level == 2)
        for i in range(0, len(data), limit):
            w = self.ctx.wrap(data[i:i + limit], self.level == 2)
            assert w.encrypted == (self.level == 2)
            self.sock.sendall(gss_msg(3, w.message))

    def recv(self):
        """One message's payload (b"" at EOF between messages)."""
        if self.level == 0:
            return self.sock.recv(65536)
        first = self.sock.recv(1)
        if not first:
            return b""
        rest = recv_exact(self.sock, 1)
        if first + rest == b"\x01\xff":
            raise Aborted()
        assert first + rest == b"\x01\x03", (first + rest).hex()
        (n,) = struct.unpack("!H", recv_exact(self.sock, 2))
        u = self.ctx.unwrap(recv_exact(self.sock, n))
        assert u.encrypted == (self.level == 2)
        return u.message

    def recv_exact(self, n, timeout=None):
        out = bytearray()
        deadline = time.monotonic() + (timeout or scaled(10))
        while len(out) < n:
            assert time.monotonic() < deadline, f"got {len(out)} of {n} bytes"
            chunk = self.recv()
            assert chunk, f"EOF after {len(out)} of {n} bytes"
            out += chunk
        return bytes(out)

    def request(self, host, port, cmd=1):
        """Sends a request (protected) and returns the reply (rep, rest)."""
        from harness import request
        self.send(request(host, port, cmd))
        reply = self.recv_exact(10) if self.level else recv_exact(self.sock, 10)
        return reply[1], reply
