"""The relay: half-close in both directions, bulk transfer integrity, many
concurrent tunnels."""
import hashlib
import os
import select
import socket
import struct
import threading
import time

import pytest

from harness import (greeting, open_tunnel, read_reply, read_until_closed, recv_exact, request,
                     scaled, wait_until)


@pytest.fixture
def srv(socks5d):
    return socks5d("--auth", "none")


BIG = 4 << 20  # more than the socket buffers hold: the FIN queues behind data


def send_then_shutdown(sock, data):
    """Sends data and then FIN from a thread (the peer reads meanwhile)."""
    def run():
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    th = threading.Thread(target=run)
    th.start()
    return th


def test_client_half_close_reaches_target_which_can_still_send(srv, target):
    c = open_tunnel(srv, *target.addr)
    t = target.accept()
    up = os.urandom(BIG)
    try:
        th = send_then_shutdown(c, up)
        # The target gets every byte, then EOF...
        assert read_until_closed(t, scaled(10)) == up
        th.join(scaled(10))
        # ...and its own direction still works, for a lot of data too.
        t.sendall(b"response after your EOF")
        assert recv_exact(c, 23) == b"response after your EOF"
        down = os.urandom(BIG)
        th = send_then_shutdown(t, down)
        assert read_until_closed(c, scaled(10)) == down
        th.join(scaled(10))
    finally:
        c.close()
    (line,) = srv.wait_access(1)
    assert line["up"] == str(BIG) and line["down"] == str(23 + BIG)


def test_target_half_close_reaches_client_which_can_still_send(srv, target):
    c = open_tunnel(srv, *target.addr)
    t = target.accept()
    down = os.urandom(BIG)
    try:
        th = send_then_shutdown(t, down)
        assert read_until_closed(c, scaled(10)) == down
        th.join(scaled(10))
        c.sendall(b"upload after your EOF")
        assert recv_exact(t, 21) == b"upload after your EOF"
        up = os.urandom(BIG)
        th = send_then_shutdown(c, up)
        assert read_until_closed(t, scaled(10)) == up
        th.join(scaled(10))
    finally:
        c.close()
    (line,) = srv.wait_access(1)
    assert line["up"] == str(21 + BIG) and line["down"] == str(BIG)


def test_64mib_each_way_through_one_tunnel_sha256_matches(srv, target):
    size = 64 << 20
    chunk = 1 << 20
    c = open_tunnel(srv, *target.addr)
    t = target.accept()
    for s in (c, t):
        s.settimeout(scaled(60))
    results = {}
    errors = []

    def pump(name, sock):
        """Sends `size` fresh random bytes and reads until EOF, hashing both."""
        sent_h, recv_h = hashlib.sha256(), hashlib.sha256()
        received = 0

        def sender():
            try:
                for _ in range(size // chunk):
                    block = os.urandom(chunk)
                    sent_h.update(block)
                    sock.sendall(block)
                sock.shutdown(socket.SHUT_WR)
            except Exception as e:
                errors.append((name, "send", e))

        st = threading.Thread(target=sender)
        st.start()
        buf = bytearray(chunk)
        try:
            while True:
                n = sock.recv_into(buf)
                if n == 0:
                    break
                recv_h.update(memoryview(buf)[:n])
                received += n
        except Exception as e:
            errors.append((name, "recv", e))
        st.join(scaled(60))
        results[name] = (sent_h.hexdigest(), recv_h.hexdigest(), received)

    threads = [threading.Thread(target=pump, args=("client", c)),
               threading.Thread(target=pump, args=("target", t))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(scaled(120))
    c.close()
    t.close()
    assert not errors, errors
    assert not any(th.is_alive() for th in threads), "transfer did not finish"
    c_sent, c_recv, c_n = results["client"]
    t_sent, t_recv, t_n = results["target"]
    assert c_n == size and t_n == size
    assert t_recv == c_sent, "client -> target stream corrupted"
    assert c_recv == t_sent, "target -> client stream corrupted"
    (line,) = srv.wait_access(1)
    assert line["up"] == str(size) and line["down"] == str(size)


def test_500_concurrent_tunnels_each_echo_their_own_message(srv, echo):
    n = 500
    socks_ = []
    try:
        # Open all tunnels first (pipelined handshakes), so they are all live
        # at once, then talk on each.
        for i in range(n):
            s = srv.connect(timeout=scaled(20))
            s.sendall(greeting() + request(*echo.addr))
            socks_.append(s)
        for s in socks_:
            assert recv_exact(s, 2) == b"\x05\x00"
            rep, *_ = read_reply(s)
            assert rep == 0
        # All n are open at the target at the same time.
        wait_until(lambda: echo.open >= n, scaled(10), what=f"{n} open connections at the target")
        msgs = [f"tunnel {i:03d} says {os.urandom(8).hex()}".encode() for i in range(n)]
        for s, m in zip(socks_, msgs):
            s.sendall(m)
        for s, m in zip(socks_, msgs):
            assert recv_exact(s, len(m)) == m
    finally:
        for s in socks_:
            s.close()
    lines = srv.wait_access(n, timeout=scaled(20))
    assert len(lines) == n
    assert all(l["rep"] == "0" for l in lines)
    assert sorted(int(l["up"]) for l in lines) == sorted(len(m) for m in msgs)


def vm_rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def tcp_buffer_max(name):
    """The largest buffer TCP autotuning gives one socket (the third field of
    net.ipv4.tcp_rmem / tcp_wmem)."""
    with open(f"/proc/sys/net/ipv4/{name}") as f:
        return int(f.read().split()[2])


@pytest.mark.parametrize("direction", ["download", "upload"])
def test_side_that_never_reads_gets_backpressure_not_server_buffering(srv, target, direction):
    # One end writes as fast as it can to the other end, which reads nothing.
    # Only kernel socket buffers may fill: at most a receive and a send buffer
    # on each of the two connections. The proxy itself must stop reading the
    # writer instead of buffering, so what it accepts beyond those buffers is
    # bounded by its own relay buffer (a pool buffer or a splice pipe).
    c = open_tunnel(srv, *target.addr)
    t = target.accept()
    writer, reader = (t, c) if direction == "download" else (c, t)
    kernel = 2 * (tcp_buffer_max("tcp_rmem") + tcp_buffer_max("tcp_wmem"))
    try:
        writer.setblocking(False)
        rss0 = vm_rss_kib(srv.pid)
        block = b"\xa5" * 65536
        sent = 0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            try:
                sent += writer.send(block)
            except BlockingIOError:
                select.select([], [writer], [], 0.05)
        growth = vm_rss_kib(srv.pid) - rss0
        assert sent < kernel + (4 << 20), \
            f"{sent >> 20} MiB accepted for a stalled reader; kernel buffers hold {kernel >> 20} MiB"
        assert growth < 4 * 1024, f"server RSS grew by {growth} KiB for one stalled tunnel"
        # Nothing was lost: the reader can drain it all.
        writer.setblocking(True)
        writer.shutdown(socket.SHUT_WR)
        got = 0
        reader.settimeout(scaled(10))
        while True:
            chunk = reader.recv(1 << 20)
            if not chunk:
                break
            assert chunk.count(0xA5) == len(chunk)
            got += len(chunk)
        assert got == sent
    finally:
        c.close()
        t.close()


def test_client_reset_mid_transfer_closes_the_target_side(srv, target):
    c = open_tunnel(srv, *target.addr)
    t = target.accept()
    t.sendall(os.urandom(256 * 1024))  # unread by the client: the RST drops it
    c.sendall(b"partial upload")
    assert recv_exact(t, 14) == b"partial upload"
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    try:
        t.settimeout(scaled(5))
        while t.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError("target side still open after the client's reset")
    (line,) = srv.wait_access(1)
    assert line["up"] == "14"
    assert srv.alive()
