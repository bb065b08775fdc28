"""What idle open streams cost: N runs wait for the user, N clients follow them with
`GET /api/runs/{id}/events?until=finished` (server-sent events, through their waits), and
nothing happens for a while. Reports the server's memory before and with the streams, its
CPU while they are idle, and the database's work meanwhile (PostgreSQL: transactions and
rows read from pg_stat_database; SQLite: the server's own CPU covers it). Then some runs are
answered and their streams must carry the answer (a check that the streams are live).

    python3 bench/streams/idle.py --bin target/release/switchyard [--streams 1000]
        [--idle 30] [--settle 40] [--database-url postgres://postgres@127.0.0.1:5432/postgres]

Streams first read their run's log 30 s after they open (a safety net under the
wake-ups), then after 60, 120, 240 and every 300 s: the default settle time measures
past the first read; --settle 5 shows it.

Needs only the standard library. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

PORT = 18795


def api(path: str, token: str | None = None, body: dict | None = None, method: str | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds, RSS MB) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return cpu, rss / 1024


def pg_counters(url: str, db: str) -> tuple[int, int, int]:
    """(transactions committed, rows returned, rows fetched) of the database."""
    out = subprocess.run(
        ["psql", url, "-Atc", f"SELECT xact_commit, tup_returned, tup_fetched FROM pg_stat_database WHERE datname = '{db}'"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    a, b, c = out.split("|")
    return int(a), int(b), int(c)


async def follow(run_id: str, token: str, seen: dict, opened: asyncio.Event, count: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    writer.write(
        f"GET /api/runs/{run_id}/events?until=finished HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n")[0]:
        raise SystemExit(f"stream refused: {head[:200]!r}")
    count[0] += 1
    if count[0] == seen["want"]:
        opened.set()
    kinds = seen.setdefault(run_id, [])
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            if line.startswith(b"data: "):
                try:
                    kinds.append(json.loads(line[6:]).get("type"))
                except ValueError:
                    pass
    finally:
        writer.close()


async def main_async(args) -> dict:
    data = tempfile.mkdtemp(prefix="sy-streams-")
    env = dict(os.environ, SWITCHYARD_DATA_DIR=data, SWITCHYARD_LOG_LEVEL="warn",
               SWITCHYARD_ADMIN_EMAIL="bench@example.com", SWITCHYARD_ADMIN_PASSWORD="bench-password")
    dbname = None
    if args.database_url:
        dbname = f"sy_streams_{os.getpid()}"
        subprocess.run(["psql", args.database_url, "-qc", f'CREATE DATABASE "{dbname}"'], check=True)
        base = args.database_url.rsplit("/", 1)[0]
        env["SWITCHYARD_DATABASE_URL"] = f"{base}/{dbname}"
    log = open(os.path.join(data, "server.log"), "wb")
    server = subprocess.Popen([args.bin, "--bind", f"127.0.0.1:{PORT}"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(120):
            try:
                api("/health")
                break
            except Exception:
                time.sleep(0.25)
        token = api("/api/auth/login", body={"email": "bench@example.com", "password": "bench-password"})["access_token"]
        graph = {
            "nodes": [{"slug": "start", "kind": "start"},
                      {"slug": "ask", "kind": "wait_for_user_input", "parameters": {"message": "Your name?"}},
                      {"slug": "hello", "kind": "assistant_message", "parameters": {"message": "Hello {{ input.user_message }}!"}},
                      {"slug": "end", "kind": "end"}],
            "edges": [{"source": "start", "target": "ask"}, {"source": "ask", "target": "hello"}, {"source": "hello", "target": "end"}],
        }
        workflow = api("/api/workflows", token, {"display_name": "Idle streams", "graph": graph, "publish": True})["workflow"]["id"]
        runs = [api(f"/api/workflows/{workflow}/runs", token, {"input": "hi"})["id"] for _ in range(args.streams)]
        await asyncio.sleep(2)
        cpu0, rss0 = proc_stats(server.pid)
        seen: dict = {"want": args.streams}
        opened = asyncio.Event()
        count = [0]
        tasks = [asyncio.create_task(follow(r, token, seen, opened, count)) for r in runs]
        await asyncio.wait_for(opened.wait(), 120)
        # Let the streams settle past their first safety-net read (30 s after opening).
        await asyncio.sleep(args.settle)
        cpu1, rss1 = proc_stats(server.pid)
        pg0 = pg_counters(args.database_url, dbname) if dbname else None
        t0 = time.monotonic()
        await asyncio.sleep(args.idle)
        cpu2, rss2 = proc_stats(server.pid)
        idle = time.monotonic() - t0
        pg1 = pg_counters(args.database_url, dbname) if dbname else None
        # Live check: answer some runs; their streams carry the answer and end.
        answered = runs[: args.check]
        t1 = time.monotonic()
        for run_id in answered:
            api(f"/api/runs/{run_id}/resume", token, {"user_message": "Ada"})
        for _ in range(200):
            if all("run.completed" in seen.get(r, []) for r in answered):
                break
            await asyncio.sleep(0.05)
        delivered = sum("run.completed" in seen.get(r, []) for r in answered)
        delivery_s = time.monotonic() - t1
        for t in tasks:
            t.cancel()
        result = {
            "backend": "postgres" if dbname else "sqlite",
            "streams": args.streams,
            "rss_mb_before": round(rss0, 1),
            "rss_mb_with_streams": round(rss1, 1),
            "rss_mb_per_stream_kb": round((rss1 - rss0) * 1024 / args.streams, 1),
            "idle_s": round(idle, 1),
            "server_cpu_ms_per_s_idle": round((cpu2 - cpu1) * 1000 / idle, 2),
            "rss_mb_after_idle": round(rss2, 1),
            "answered": len(answered),
            "delivered": delivered,
            "delivery_s": round(delivery_s, 2),
        }
        if pg0 and pg1:
            result["db_transactions_per_s"] = round((pg1[0] - pg0[0]) / idle, 2)
            result["db_rows_returned_per_s"] = round((pg1[1] - pg0[1]) / idle, 1)
            result["db_rows_fetched_per_s"] = round((pg1[2] - pg0[2]) / idle, 1)
        return result
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        if dbname:
            subprocess.run(["psql", args.database_url, "-qc", f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'], check=False)
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--idle", type=float, default=30.0)
    ap.add_argument("--settle", type=float, default=40.0, help="seconds between opening the streams and measuring")
    ap.add_argument("--check", type=int, default=20, help="runs answered at the end, to check the streams are live")
    ap.add_argument("--database-url", default=None, help="a PostgreSQL server (a database is made and dropped); SQLite otherwise")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.streams * 2 + 256)), hard))
    print(json.dumps(asyncio.run(main_async(args))))


if __name__ == "__main__":
    main()
