#!/usr/bin/env python3
"""bench/lua_sleep.py — hold N requests that each sleep in a Lua script.

Usage: lua_sleep.py PORT N PID

Opens N keep-alive connections to 127.0.0.1:PORT (paced, so that the
listen backlog never overflows), then sends `GET /sleep` on all of them at
once and waits for every response. The server's script answers after
`sleep(1)`, so with non-blocking sleeps the whole batch finishes in about
one second. Prints: connections, wall time from the first send to the last
response, the slowest single request, non-200 answers, and the server's
CPU time (PID and its children, from /proc) spent while the batch was in
flight. Every wait is bounded (60 s).
"""

import asyncio
import os
import sys
import time

PORT, N, PID = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of pid and its child processes (the workers)."""
    total = 0
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / TICK


async def one(reader, writer, start, results):
    writer.write(b"GET /sleep HTTP/1.1\r\nHost: bench\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    results.append((status, time.monotonic() - start))


async def main():
    conns = []
    for i in range(N):
        conns.append(await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", PORT), 10))
        if i % 500 == 499:
            await asyncio.sleep(0.05)
    results = []
    cpu0 = cpu_seconds(PID)
    start = time.monotonic()
    await asyncio.wait_for(
        asyncio.gather(*(one(r, w, start, results) for r, w in conns)), 60)
    wall = time.monotonic() - start
    cpu = cpu_seconds(PID) - cpu0
    bad = sum(1 for s, _ in results if s != 200)
    slowest = max(t for _, t in results)
    print(f"connections {len(results)}  wall {wall:.3f} s  slowest {slowest:.3f} s  "
          f"non-200 {bad}  server CPU {cpu:.2f} s")
    for _, w in conns:
        w.close()


asyncio.run(main())
