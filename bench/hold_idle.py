#!/usr/bin/env python3
"""Hold many idle HTTP/1.1 keep-alive connections open (stdlib only).

Used by bench/static.sh to measure a server's memory per idle keep-alive
connection. Each connection completes one real request first
(`GET /1k.bin`, full response read by Content-Length), so what is held is a
genuine idle keep-alive connection, not a socket that never spoke.

    hold_idle.py HOST PORT COUNT SOURCE_IP [HOLD_SECONDS]

- Binds every socket to SOURCE_IP (e.g. 127.0.0.2) before connecting, so
  several holders on different 127.0.0.x addresses do not share one pool of
  ephemeral ports. The per-process fd limit here is 20,000, so a caller that
  wants more connections runs several holders.
- Opens connections a few hundred at a time (never floods the listen
  backlog), with an overall setup deadline.
- Prints `ready ok=N failed=M` (one line) once all are done, then holds.
- While holding, reads commands from stdin, one per line:
    check  -> prints `open=N closed=M` (peeks each socket: closed means the
              server closed it or reset it)
  EOF on stdin ends the hold; so does HOLD_SECONDS (default 60, capped at
  120) so a lost caller never leaves connections behind.
"""

import errno
import os
import selectors
import socket
import sys
import time

REQUEST = b"GET /1k.bin HTTP/1.1\r\nHost: x\r\n\r\n"
IN_FLIGHT = 200  # connections being set up at once
SETUP_DEADLINE = 90.0  # seconds for all COUNT connections to finish a request
MAX_HOLD = 120.0
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


class Conn:
    """One connection while its single request is in progress."""

    __slots__ = ("sock", "buf", "need", "sent")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.need = None  # total bytes of head + body once the head is parsed
        self.sent = False


def response_length(buf):
    """Total length of the response in buf, or None if the head is incomplete.

    Raises ValueError on a non-200 status or a missing Content-Length."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1").split("\r\n")
    parts = head[0].split(" ", 2)
    if len(parts) < 2 or parts[1] != "200":
        raise ValueError("status line %r" % head[0])
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return end + 4 + int(value.strip())
    raise ValueError("no Content-Length")


def open_all(host, port, count, source_ip):
    sel = selectors.DefaultSelector()
    done, failed, errors = [], 0, {}
    started = 0
    deadline = time.monotonic() + SETUP_DEADLINE

    def fail(conn, why):
        nonlocal failed
        failed += 1
        errors[why] = errors.get(why, 0) + 1
        sel.unregister(conn.sock)
        conn.sock.close()

    while len(done) + failed < count:
        if time.monotonic() > deadline:
            break
        while started < count and len(sel.get_map()) < IN_FLIGHT:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((source_ip, 0))
            s.setblocking(False)
            rc = s.connect_ex((host, port))
            started += 1
            conn = Conn(s)
            sel.register(s, selectors.EVENT_WRITE, conn)
            if rc not in (0, errno.EINPROGRESS):
                fail(conn, "connect:" + errno.errorcode.get(rc, str(rc)))
        for key, _ in sel.select(timeout=1.0):
            conn = key.data
            s = conn.sock
            if not conn.sent:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(conn, "connect:" + errno.errorcode.get(err, str(err)))
                    continue
                try:
                    s.send(REQUEST)  # 34 bytes into an empty buffer: all of it
                except OSError as e:
                    fail(conn, "send:" + type(e).__name__)
                    continue
                conn.sent = True
                sel.modify(s, selectors.EVENT_READ, conn)
                continue
            try:
                chunk = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                fail(conn, "recv:" + type(e).__name__)
                continue
            if not chunk:
                fail(conn, "closed before full response")
                continue
            conn.buf += chunk
            try:
                if conn.need is None:
                    conn.need = response_length(conn.buf)
            except ValueError as e:
                fail(conn, "bad response: %s" % e)
                continue
            if conn.need is not None and len(conn.buf) >= conn.need:
                if len(conn.buf) > conn.need:
                    fail(conn, "extra bytes after response")
                    continue
                sel.unregister(s)
                done.append(s)
    # Anything still in progress at the deadline counts as failed.
    for key in list(sel.get_map().values()):
        fail(key.data, "setup deadline")
    failed += count - started
    sel.close()
    return done, failed, errors


def count_open(socks):
    open_, closed = 0, 0
    for s in socks:
        try:
            data = s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            open_ += 1  # nothing to read and not closed: still an idle connection
            continue
        except OSError:
            closed += 1
            continue
        if data:
            open_ += 1  # unexpected bytes, but the connection is open
        else:
            closed += 1
    return open_, closed


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    host, port, count, source_ip = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    hold = min(float(sys.argv[5]) if len(sys.argv) == 6 else 60.0, MAX_HOLD)

    socks, failed, errors = open_all(host, port, count, source_ip)
    detail = " ".join("%s=%d" % (k.replace(" ", "_"), v) for k, v in sorted(errors.items()))
    print("ready ok=%d failed=%d %s" % (len(socks), failed, detail), flush=True)

    end = time.monotonic() + hold
    sel = selectors.DefaultSelector()
    try:
        sel.register(sys.stdin.fileno(), selectors.EVENT_READ)
        pollable = True
    except (PermissionError, ValueError):
        pollable = False  # a regular file (e.g. /dev/null): reads never block
    pending = b""
    while True:
        left = end - time.monotonic()
        if left <= 0:
            print("hold time limit reached", flush=True)
            break
        if pollable and not sel.select(timeout=min(left, 1.0)):
            continue
        data = os.read(sys.stdin.fileno(), 4096)
        if not data:
            break
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip() == b"check":
                o, c = count_open(socks)
                print("open=%d closed=%d" % (o, c), flush=True)
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
