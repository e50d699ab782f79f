"""Each phase of a session owns what it has in flight: a client that goes
away while the session waits (on a dial, a BIND peer) ends that wait, and
the operation is cancelled rather than left to its own timeout."""
import errno
import socket
import struct

from harness import (full_backlog_listener, greeting, recv_exact, request, scaled, syn_sent_to,
                     wait_until)


def reset(sock):
    """Closes with a RST (SO_LINGER 0), as a crashed client would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_a_reset_while_dialing_cancels_the_dial(socks5d):
    # The connect timeout is far away: only the client's reset can end it.
    srv = socks5d("--timeout-connect", "60s")
    lsock, filler = full_backlog_listener()
    port = lsock.getsockname()[1]
    try:
        fds = srv.fd_count()
        c = srv.connect()
        c.sendall(greeting() + request("127.0.0.1", port))
        assert recv_exact(c, 2) == b"\x05\x00"
        wait_until(lambda: syn_sent_to(port), scaled(3),
                   what="the proxy's SYN to the unanswering target")
        reset(c)
        (line,) = srv.wait_access(1, timeout=scaled(5))
        assert line["error"] == "client gone", line
        assert line["rep"] == "-", line
        # The dial's socket is gone with the session, not left to time out.
        wait_until(lambda: syn_sent_to(port) == 0, scaled(5), what="the dial to be cancelled")
        wait_until(lambda: srv.fd_count() == fds, scaled(5), what="descriptors given back")
    finally:
        filler.close()
        lsock.close()


def test_a_reset_while_waiting_for_the_bind_peer_closes_the_listener(socks5d):
    srv = socks5d("--timeout-bind", "60s")
    fds = srv.fd_count()
    c = srv.connect()
    c.sendall(greeting() + request("0.0.0.0", 0, cmd=2))
    assert recv_exact(c, 2) == b"\x05\x00"
    first = recv_exact(c, 10)
    assert first[1] == 0x00, first
    bnd = (socket.inet_ntoa(first[4:8]), struct.unpack("!H", first[8:10])[0])
    wait_until(lambda: srv.fd_count() == fds + 2, scaled(3), what="the BIND listener")
    reset(c)
    (line,) = srv.wait_access(1, timeout=scaled(5))
    assert line["error"] == "client gone", line
    assert line["cmd"] == "bind", line
    wait_until(lambda: srv.fd_count() == fds, scaled(5), what="descriptors given back")
    probe = socket.socket()
    probe.settimeout(scaled(3))
    try:
        assert probe.connect_ex(bnd) == errno.ECONNREFUSED  # nobody listens there now
    finally:
        probe.close()
