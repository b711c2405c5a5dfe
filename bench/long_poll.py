#!/usr/bin/env python3
"""Long-poll clients for bench/shared.sh (stdlib only).

    long_poll.py HOST PORT COUNT IDLE_SECONDS PID...

Opens COUNT connections, each sending `GET /wait` (the script answers once
a broadcast comes), a few hundred at a time; waits until the server counts
COUNT waiters (`GET /count`); measures the CPU time (user+system) of the
server processes PID... over IDLE_SECONDS while all of them wait; then
sends `GET /send` and measures how long until every waiter has its answer.
Prints one line per measure. Bounded: every wait has a deadline.
"""

import os
import selectors
import socket
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def get(host, port, path):
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode()


def main():
    host, port, count, idle = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    pids = [int(p) for p in sys.argv[5:]]
    sel = selectors.DefaultSelector()
    conns = []
    deadline = time.monotonic() + 120
    for i in range(count):
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(b"GET /wait HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.setblocking(False)
        conns.append(s)
        if i % 500 == 499:
            time.sleep(0.05)
    while int(get(host, port, "/count")) < count:
        if time.monotonic() > deadline:
            sys.exit(f"only {get(host, port, '/count')} of {count} waiting")
        time.sleep(0.1)
    print(f"waiting: {count} long-poll requests")
    before = cpu_seconds(pids)
    time.sleep(idle)
    used = cpu_seconds(pids) - before
    print(f"idle: {used:.3f} s of server CPU over {idle:.0f} s ({100 * used / idle:.2f}%)")
    for s in conns:
        sel.register(s, selectors.EVENT_READ, b"")
    sent = time.monotonic()
    get(host, port, "/send")
    answered = 0
    pending = {s: b"" for s in conns}
    while pending and time.monotonic() < sent + 30:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            chunk = s.recv(65536)
            pending[s] += chunk
            if not chunk:
                if b" 200 " in pending[s].split(b"\r\n", 1)[0] and pending[s].endswith(b"go"):
                    answered += 1
                sel.unregister(s)
                s.close()
                del pending[s]
    took = time.monotonic() - sent
    print(f"woken: {answered} of {count} answered within {took:.3f} s of the broadcast")


main()
