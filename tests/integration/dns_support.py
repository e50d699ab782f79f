"""A tiny DNS server inside a network namespace, on the address the system's
resolv.conf names, so that socks5d started in the namespace asks it (and
nothing leaves the machine). Used by the name tests (test_attack_names.py)
and the route tests whose hop names fail (test_routes_failover.py)."""
import select
import socket
import struct
import subprocess
import threading

from harness import NetNS, scaled

NODATA = ""  # a zone value: the name exists, with no address


class DnsServer:
    """Answers A queries from `zone` ({name: IPv4 address, or NODATA}),
    NXDOMAIN for other names, and never answers the names in `silent`, on a
    UDP socket made inside the namespace; remembers every name it was
    asked. AAAA answers are empty."""

    def __init__(self, ns, addr, zone, silent=()):
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        self.zone = zone
        self.silent = set(silent)
        self.sock = ns.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((addr, 53))
        self.asked = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping.is_set():
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if r:
                data, peer = self.sock.recvfrom(512)
                answer = self._answer(data)
                if answer is not None:
                    self.sock.sendto(answer, peer)

    def _answer(self, query):
        qid, = struct.unpack(">H", query[:2])
        off, labels = 12, []
        while query[off]:
            labels.append(query[off + 1:off + 1 + query[off]])
            off += 1 + query[off]
        qtype, = struct.unpack(">H", query[off + 1:off + 3])
        question = query[12:off + 5]
        name = b".".join(labels).decode("latin-1")
        self.asked.append(name)
        if name.lower() in self.silent:
            return None
        ip = self.zone.get(name.lower())
        if ip is None:
            return struct.pack(">HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question
        answers = b""
        if qtype == 1 and ip != NODATA:
            answers = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(ip)
        count = 1 if answers else 0
        return struct.pack(">HHHHHH", qid, 0x8180, 1, count, 0, 0) + question + answers

    def close(self):
        self.stopping.set()
        self.thread.join(scaled(5))
        self.sock.close()


def system_nameserver():
    """The first name server of /etc/resolv.conf (what the resolver asks
    first), or 127.0.0.1 when it names none."""
    try:
        with open("/etc/resolv.conf") as f:
            for line in f:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver":
                    return words[1].split("%")[0]
    except OSError:
        pass
    return "127.0.0.1"


def dns_namespace(hosts, zone, env=None, silent=()):
    """(namespace, DnsServer): a namespace whose processes read the hosts
    file `hosts` (CARES_HOSTS) and `env`, with the DNS server on the system's
    first name server address, which exists only inside it. The caller
    closes both."""
    ns = NetNS(env={**(env or {}), "CARES_HOSTS": str(hosts)})
    try:
        server = system_nameserver()
        if not server.startswith("127.") and server != "::1":
            prefix = "/128" if ":" in server else "/32"
            subprocess.run(ns.exec_prefix + ["ip", "addr", "add", server + prefix, "dev", "lo"],
                           check=True, capture_output=True)
        return ns, DnsServer(ns, server, zone, silent)
    except BaseException:
        ns.close()
        raise
