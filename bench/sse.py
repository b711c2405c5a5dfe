#!/usr/bin/env python3
"""Server-sent event clients for bench/sse.sh (stdlib only).

    sse.py HOST PORT COUNT IDLE_SECONDS WORKER_PID...

Opens COUNT event streams (`GET /events`) from client processes of at most
PER_PROCESS connections each, every process on its own source address
(127.0.0.2, 127.0.0.3, ...: the per-process fd limit is 20,000, and one
source address has a bounded set of ports). The script answers 503 on every
worker but worker 0, so a client reconnects until it is there: all the
streams wait on one worker. Once every stream has its `hello` event:
prints the workers' memory growth per stream, measures the CPU time
(user+system) of WORKER_PID... over IDLE_SECONDS, then sends `GET /send`
until a worker other than 0 takes it (the broadcast comes from another
worker) and measures how long until every stream has the event. Prints
one line per measure. Bounded: every wait has a deadline, and a client
process ends on its own after MAX_LIFE seconds.

    sse.py --client HOST PORT COUNT SOURCE_IP

is one client process: prints `ready ok=N retries=R` once its streams all
have `hello` (or `failed ...`), then, once they have `data: go`, `got N
first=T last=T closed=C` with T from the system-wide monotonic clock.
"""

import os
import selectors
import socket
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")
PER_PROCESS = 5000
IN_FLIGHT = 200  # streams being set up at once, per process
SETUP_DEADLINE = 120.0
MAX_LIFE = 300.0
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
REQUEST = b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n"


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def get(host, port, path):
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def client(host, port, count, source):
    """One client process: COUNT streams from SOURCE."""
    sel = selectors.DefaultSelector()
    died = time.monotonic() + MAX_LIFE
    deadline = time.monotonic() + SETUP_DEADLINE
    buf = {}
    ready = 0
    retries = 0
    to_open = count

    def open_one():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((source, 0))
        s.setblocking(False)
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass
        buf[s] = b""
        sel.register(s, selectors.EVENT_WRITE)

    while ready < count:
        if time.monotonic() > deadline:
            print(f"failed ready={ready} of {count} retries={retries}", flush=True)
            return
        while to_open and len(buf) - ready < IN_FLIGHT:
            open_one()
            to_open -= 1
        for key, events in sel.select(timeout=1):
            s = key.fileobj
            if events & selectors.EVENT_WRITE:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    sys.exit(f"connect from {source}: {os.strerror(err)}")
                s.sendall(REQUEST)
                sel.modify(s, selectors.EVENT_READ)
                continue
            chunk = s.recv(65536)
            buf[s] += chunk
            head, complete, _ = buf[s].partition(b"\r\n")
            if not chunk or (complete and b" 200 " not in head):
                # Another worker (503): again, until worker 0 has it.
                sel.unregister(s)
                s.close()
                del buf[s]
                retries += 1
                to_open += 1
            elif b"event: hello" in buf[s]:
                buf[s] = b""
                ready += 1
    print(f"ready ok={ready} retries={retries}", flush=True)

    got = []
    closed = 0
    waiting = set(buf)
    while waiting and time.monotonic() < died:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            chunk = s.recv(65536)
            if not chunk:
                closed += 1
                sel.unregister(s)
                waiting.discard(s)
                continue
            # Only the tail matters: heartbeats come and go.
            buf[s] = (buf[s] + chunk)[-64:]
            if s in waiting and b"data: go" in buf[s]:
                got.append(time.monotonic())
                waiting.discard(s)
    first = min(got) if got else 0
    last = max(got) if got else 0
    print(f"got {len(got)} first={first:.6f} last={last:.6f} closed={closed}", flush=True)


def main():
    host, port, count, idle = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    pids = [int(p) for p in sys.argv[5:]]
    rss_before = {pid: rss_kib(pid) for pid in pids}
    procs = []
    left, n = count, 0
    while left > 0:
        share = min(left, PER_PROCESS)
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "--client", host, str(port), str(share),
             f"127.0.0.{2 + n}"],
            stdout=subprocess.PIPE, text=True))
        left -= share
        n += 1
    retries = 0
    for p in procs:
        line = p.stdout.readline().strip()
        if not line.startswith("ready"):
            for q in procs:
                q.kill()
            sys.exit(f"a client process: {line or 'exited'}")
        retries += int(line.rsplit("retries=", 1)[1])
    print(f"waiting: {count} event streams on worker 0 ({len(procs)} client processes, "
          f"{retries} connections first landed on another worker)")
    for pid in pids:
        grown = rss_kib(pid) - rss_before[pid]
        print(f"memory: worker {pid} RSS grew {grown} KiB, {1024 * grown / count:.0f} bytes per stream")
    before = cpu_seconds(pids)
    time.sleep(idle)
    used = cpu_seconds(pids) - before
    print(f"idle: {used:.3f} s of worker CPU over {idle:.0f} s ({100 * used / idle:.2f}%)")
    for _ in range(100):
        sent = time.monotonic()
        status, who = get(host, port, "/send")
        if status == 200:
            break
    else:
        sys.exit("every /send landed on worker 0")
    got, last, closed = 0, sent, 0
    for p in procs:
        line = p.stdout.readline().split()
        p.wait(timeout=MAX_LIFE)
        if line and line[0] == "got":
            got += int(line[1])
            last = max(last, float(line[3].split("=")[1]))
            closed += int(line[4].split("=")[1])
    print(f"woken: {got} of {count} streams had the broadcast from worker {who} "
          f"within {last - sent:.3f} s ({closed} closed)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        main()
