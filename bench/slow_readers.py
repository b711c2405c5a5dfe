#!/usr/bin/env python3
"""Many slow clients downloading one large file (stdlib only).

Used by bench/static_large.sh: each connection sends one
`GET PATH HTTP/1.1` and then reads the response at about RATE bytes/s,
so the server has to keep COUNT large responses in flight for a long time
(200 clients at 1 MiB/s by default in static_large.sh).

    slow_readers.py HOST PORT PATH COUNT RATE SECONDS [SOURCE_IP]

- Small receive buffers (256 KiB) so the server really is held back by
  the client's pace instead of parking the file in the client's kernel.
- Prints `ready conns=N` once every connection got its first bytes (or
  after 30 s), then `done conns=N bytes=B errors=E closed=C` after SECONDS
  (capped at 300) and exits, closing everything.
"""

import selectors
import socket
import sys
import time

HOST, PORT, PATH = sys.argv[1], int(sys.argv[2]), sys.argv[3]
COUNT, RATE, SECONDS = int(sys.argv[4]), float(sys.argv[5]), min(float(sys.argv[6]), 300.0)
SOURCE = sys.argv[7] if len(sys.argv) > 7 else None
TICK = 0.02


def main():
    sel = selectors.DefaultSelector()
    conns = []
    errors = 0
    for _ in range(COUNT):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        if SOURCE:
            s.bind((SOURCE, 0))
        try:
            s.connect((HOST, PORT))
            s.sendall(f"GET {PATH} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        except OSError:
            errors += 1
            s.close()
            continue
        s.setblocking(False)
        conns.append({"sock": s, "got": 0, "registered": False, "closed": False})
    start = time.monotonic()
    ready_said = False
    total = 0
    closed = 0
    end = start + SECONDS
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if not ready_said and (all(c["got"] > 0 or c["closed"] for c in conns) or now - start > 30):
            print(f"ready conns={sum(c['got'] > 0 for c in conns)}", flush=True)
            ready_said = True
        # Register the connections whose budget allows reading now.
        for c in conns:
            if c["closed"]:
                continue
            budget = RATE * (now - start) + 64 * 1024 - c["got"]
            if budget > 0 and not c["registered"]:
                sel.register(c["sock"], selectors.EVENT_READ, c)
                c["registered"] = True
        for key, _ in sel.select(timeout=TICK):
            c = key.data
            budget = int(RATE * (time.monotonic() - start) + 64 * 1024 - c["got"])
            if budget <= 0:
                sel.unregister(c["sock"])
                c["registered"] = False
                continue
            try:
                data = c["sock"].recv(min(budget, 65536))
            except BlockingIOError:
                continue
            except OSError:
                data = b""
                errors += 1
            if not data:
                sel.unregister(c["sock"])
                c["registered"] = False
                c["closed"] = True
                closed += 1
                continue
            c["got"] += len(data)
            total += len(data)
            if RATE * (time.monotonic() - start) + 64 * 1024 - c["got"] <= 0:
                sel.unregister(c["sock"])
                c["registered"] = False
        time.sleep(TICK / 2)
    print(f"done conns={len(conns)} bytes={total} errors={errors} closed={closed}", flush=True)
    for c in conns:
        c["sock"].close()


main()
