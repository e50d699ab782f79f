"""Bulk directions relay through a pipe with splice(2) once they have moved
256 KiB. The kernel gives an unprivileged user whose pipes already hold
fs.pipe-user-pages-soft only 2-page (8 KiB) pipes, which move less per call
than read/write with a 64 KiB buffer: socks5d, dropped to `nobody` as the
packaged unit runs it, must relay with buffers then, never through such a
pipe, move every byte, and take big pipes again once they fit."""
import fcntl
import hashlib
import os
import subprocess
import sys
import threading

from harness import open_tunnel, scaled

F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032
BIG_PIPE = 512 * 1024
SMALLEST_PIPE = 64 * 1024  # BUFPOOL_SIZE: below it a buffer moves more per call
SIZE = 16 << 20

# Run as nobody: takes 512 KiB pipes until the kernel refuses one (the
# user's soft limit), then prints how many it holds and the size the last,
# refused pipe kept, and holds them all until stdin closes.
HOG = r"""
import fcntl, os, sys
held = []
size = 0
while len(held) < 4096:
    r, w = os.pipe()
    held.append((r, w))
    try:
        fcntl.fcntl(w, 1031, 512 * 1024)
    except PermissionError:
        size = fcntl.fcntl(w, 1032)
        break
print(len(held), size, flush=True)
sys.stdin.read()
"""


def pipe_sizes(pid):
    """The capacity of every pipe socks5d holds open."""
    sizes = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        path = f"/proc/{pid}/fd/{fd}"
        try:
            if not os.readlink(path).startswith("pipe:"):
                continue
            f = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            continue  # closed meanwhile
        try:
            sizes.append(fcntl.fcntl(f, F_GETPIPE_SZ))
        finally:
            os.close(f)
    return sizes


def downloads(srv, target, n):
    """n tunnels at once, SIZE random bytes down each; every byte checked."""
    clients = [open_tunnel(srv, *target.addr) for _ in range(n)]
    peers = [target.accept() for _ in range(n)]
    errors, digests = [], {}

    def send(i, sock):
        h = hashlib.sha256()
        try:
            for _ in range(SIZE // (1 << 20)):
                block = os.urandom(1 << 20)
                h.update(block)
                sock.sendall(block)
            sock.close()
        except OSError as e:
            errors.append(("send", i, e))
        digests[("sent", i)] = h.hexdigest()

    def receive(i, sock):
        h, got = hashlib.sha256(), 0
        sock.settimeout(scaled(30))
        try:
            while chunk := sock.recv(1 << 20):
                h.update(chunk)
                got += len(chunk)
        except OSError as e:
            errors.append(("recv", i, e))
        digests[("received", i)] = (h.hexdigest(), got)

    threads = [threading.Thread(target=send, args=(i, p)) for i, p in enumerate(peers)]
    threads += [threading.Thread(target=receive, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(60))
    for c in clients:
        c.close()
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "a transfer did not finish"
    for i in range(n):
        assert digests[("received", i)] == (digests[("sent", i)], SIZE), f"tunnel {i} corrupted"


def test_pipes_the_kernel_shrinks_are_refused_and_big_ones_taken_again(socks5d, target):
    srv = socks5d("--auth", "none", "--user", "nobody", "-w", "2")
    hog = subprocess.Popen([sys.executable, "-c", HOG], user="nobody", stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    try:
        held, refused_size = map(int, hog.stdout.readline().split())
        # The precondition: nobody's new pipes are now small (fails loudly on
        # a machine without the soft limit, instead of proving nothing).
        assert 0 < refused_size < SMALLEST_PIPE, (held, refused_size)
        downloads(srv, target, 4)
        small = [s for s in pipe_sizes(srv.pid) if s < SMALLEST_PIPE]
        assert not small, f"socks5d holds pipes of {small} bytes"
    finally:
        hog.stdin.close()
        hog.wait(scaled(10))
    # The pipes fit again: after a few rounds on buffers the relay tries a
    # pipe again, and the idle pool keeps the big ones it got.
    downloads(srv, target, 4)
    assert BIG_PIPE in pipe_sizes(srv.pid)
