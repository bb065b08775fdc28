"""Continuing conversations: load for `threads.add_user_message`, the turn chat mostly is.

With `--op create` each request starts a new thread instead (`threads.create`), so one
harness measures both kinds of turn; `--db-cpu` adds the CPU time of the local
PostgreSQL server's processes during the window (`db.cpu_ms_per_req`).

Each virtual user first gets a thread of its own with --prior-turns earlier turns
(prepared before the measured window, unmeasured), then keeps talking in it: every
request adds a user message to that thread and reads the streamed answer to its end.
Threads grow during the window, as conversations do; --prior-turns 200 measures long
ones. Results are JSON lines with the fields of the peer's load.py (op `continue`), so
its report.py shows them beside `create`.

Uses the peer's HTTP client and process metrics (../shared/bench-peer/load.py) and its
process helpers (bench.py); run with that folder's virtualenv:

    python bench/chatkit/turns.py --out target/bench-chatkit/switchyard-continue \
        --server-cmd '/path/to/switchyard --bind 127.0.0.1:{port}' --path /api/chatkit \
        --auth 'Bearer KEY' --health-path /health -c 1,16,64 --reps 3 \
        --server-cpus 0 --harness-cpus 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

PEER = Path(os.environ.get("BENCH_PEER", Path(__file__).resolve().parents[3] / "shared" / "bench-peer"))
sys.path.insert(0, str(PEER))

import bench as peer_bench  # noqa: E402
import load  # noqa: E402

perf = time.perf_counter
TEXT = "Thanks. And one more question, please answer with your standard benchmark reply."


def request(url: str, auth: str | None, body: dict) -> bytes:
    from urllib.parse import urlsplit

    u = urlsplit(url)
    data = json.dumps(body, separators=(",", ":")).encode()
    extra = f"Authorization: {auth}\r\n" if auth else ""
    return (
        f"POST {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nUser-Agent: chatkit-bench/1\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\n{extra}Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def user_input(text: str) -> dict:
    return {"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}}


def thread_id_of(body: bytes) -> str:
    for frame in bytes(body).split(b"\n\n"):
        for line in frame.split(b"\n"):
            if line.startswith(b"data: "):
                event = json.loads(line[6:])
                if event.get("type") == "thread.created":
                    return event["thread"]["id"]
    raise SystemExit(f"no thread.created event in {bytes(body[:300])!r}")


def postgres_cpu() -> float:
    """CPU seconds of every `postgres` process, plus what the postmaster's exited children used."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if name != "postgres":
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # utime, stime, cutime, cstime are fields 14-17 (1-based) of the whole line.
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        total += (utime + stime + cutime + cstime) / tick
    return total


async def run_window(args, conc: int, server_pid: int | None, llm_pid: int | None) -> dict:
    from urllib.parse import urlsplit

    u = urlsplit(args.url)
    if not u.hostname.startswith("127.") and u.hostname != "localhost":
        raise SystemExit("refusing: load target must be on loopback")
    loop = asyncio.get_running_loop()

    async def connect() -> load.HttpConn:
        _, proto = await loop.create_connection(load.HttpConn, u.hostname, u.port or 80)
        return proto

    async def turn(conn, raw: bytes) -> load.Result:
        res = await asyncio.wait_for(conn.request(raw), args.timeout)
        if res.status != 200 or b"thread.item.done" not in res.body:
            raise SystemExit(f"a preparing turn failed: HTTP {res.status} {bytes(res.body[-300:])!r}")
        return res

    # Preparation (unmeasured): a thread per user, with its earlier turns.
    threads: list[str] = []
    conn = await connect()
    for _ in range(conc if args.op == "continue" else 0):
        res = await turn(conn, request(args.url, args.auth, {"type": "threads.create", "params": {"input": user_input("Hello! Please answer with your standard benchmark reply.")}}))
        thread_id = thread_id_of(res.body)
        for i in range(args.prior_turns):
            await turn(conn, request(args.url, args.auth, {"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": user_input(f"Earlier question {i}.")}}))
        threads.append(thread_id)
    conn.close()

    lat: list[float] = []
    ttfe: list[float] = []
    errors: dict[str, int] = {}
    samples: list[str] = []
    state = {"stop": False}
    ready = asyncio.Event()
    window: dict[str, float] = {}
    n_ready = [0]

    def err(kind: str, detail: str = "") -> None:
        errors[kind] = errors.get(kind, 0) + 1
        if detail and len(samples) < 5:
            samples.append(f"{kind}: {detail[:300]}")

    async def vu(idx: int) -> None:
        if args.op == "continue":
            raw = request(args.url, args.auth, {"type": "threads.add_user_message", "params": {"thread_id": threads[idx], "input": user_input(TEXT)}})
        else:
            raw = request(args.url, args.auth, {"type": "threads.create", "params": {"input": user_input("Hello! Please answer with your standard benchmark reply.")}})
        conn = await connect()
        n_ready[0] += 1
        if n_ready[0] >= conc:
            window["w0"] = perf() + args.warmup
            window["w1"] = window["w0"] + args.duration
            ready.set()
        await ready.wait()
        while not state["stop"]:
            if conn is None or conn.closed:
                conn = await connect()
            t0 = perf()
            try:
                res = await asyncio.wait_for(conn.request(raw), args.timeout)
            except (asyncio.TimeoutError, ConnectionError, OSError, ValueError) as e:
                err("conn", repr(e))
                conn.close()
                conn = None
                continue
            if not (window["w0"] <= res.t_end <= window["w1"]):
                continue
            body = bytes(res.body)
            if res.status != 200:
                err(f"http_{res.status}", body[:300].decode("utf-8", "replace"))
                continue
            if b'"type":"error"' in body or body.count(b"thread.item.done") < 2:
                err("bad_stream", body[-300:].decode("utf-8", "replace"))
                continue
            lat.append(res.t_end - t0)
            ttfe.append((res.t_first_event or res.t_end) - t0)
        if conn is not None:
            conn.close()

    snap: dict = {}
    rss_peak = [0]

    async def sampler() -> None:
        await ready.wait()
        await asyncio.sleep(max(0.0, window["w0"] - perf()))
        snap["srv0"], snap["llm0"], snap["me0"], snap["t0"] = load.tree_cpu(server_pid), load.tree_cpu(llm_pid), resource.getrusage(resource.RUSAGE_SELF), perf()
        snap["db0"] = postgres_cpu() if args.db_cpu else 0.0
        while perf() < window["w1"]:
            rss_peak[0] = max(rss_peak[0], load.tree_rss(server_pid)[0])
            await asyncio.sleep(min(0.1, max(0.0, window["w1"] - perf())))
        snap["srv1"], snap["llm1"], snap["me1"], snap["t1"] = load.tree_cpu(server_pid), load.tree_cpu(llm_pid), resource.getrusage(resource.RUSAGE_SELF), perf()
        snap["db1"] = postgres_cpu() if args.db_cpu else 0.0
        state["stop"] = True

    tasks = [asyncio.create_task(vu(i)) for i in range(conc)]
    await sampler()
    done, pending = await asyncio.wait(tasks, timeout=args.timeout + 1)
    for t in pending:
        t.cancel()
    for t in done:
        if t.exception():
            err("vu_crash", repr(t.exception()))
    win = snap["t1"] - snap["t0"]
    n = len(lat)
    srv = snap["srv1"] - snap["srv0"]
    llm = snap["llm1"] - snap["llm0"]
    me = (snap["me1"].ru_utime + snap["me1"].ru_stime) - (snap["me0"].ru_utime + snap["me0"].ru_stime)
    lat.sort()
    ttfe.sort()
    ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
    hwm = load.tree_hwm(server_pid)
    db = snap["db1"] - snap["db0"]
    if args.op == "create":
        op = "create"
    else:
        op = "continue" if args.prior_turns < 50 else f"continue{args.prior_turns}"
    return {
        "url": args.url,
        "op": op,
        "concurrency": conc,
        "prior_turns": args.prior_turns,
        "window_s": round(win, 3),
        "requests": n,
        "rps": round(n / win, 2) if win else None,
        "errors": errors,
        "error_samples": samples,
        "lat_ms": {"p50": ms(load.pct(lat, 50)), "p90": ms(load.pct(lat, 90)), "p99": ms(load.pct(lat, 99)), "max": ms(lat[-1] if lat else None)},
        "ttfe_ms": {"p50": ms(load.pct(ttfe, 50)), "p99": ms(load.pct(ttfe, 99))} if ttfe else None,
        "ttft_ms": None,
        "server": {
            "pid": server_pid,
            "procs": load.tree_rss(server_pid)[1],
            "cpu_s": round(srv, 3),
            "cpu_ms_per_req": round(srv / n * 1000, 3) if n else None,
            "cpu_util_cores": round(srv / win, 3) if win else None,
            "rss_peak_window_mb": round(rss_peak[0] / 2**20, 1),
            "vmhwm_mb_sum": round(sum(hwm) / 2**20, 1),
        },
        "llm": {"pid": llm_pid, "cpu_s": round(llm, 3), "cpu_ms_per_req": round(llm / n * 1000, 3) if n else None},
        "loadgen": {"cpu_s": round(me, 3), "cpu_ms_per_req": round(me / n * 1000, 3) if n else None},
        "db": {"cpu_s": round(db, 3), "cpu_ms_per_req": round(db / n * 1000, 3) if n else None} if args.db_cpu else None,
        "turns_per_thread_at_end": args.prior_turns + 1 + (n // conc if conc else 0) if args.op == "continue" else 1,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="results prefix (writes .jsonl and .log)")
    ap.add_argument("--server-cmd", required=True, help="shell command of the server ({port}, {llm_url})")
    ap.add_argument("--path", default="/chatkit")
    ap.add_argument("--auth", default=None)
    ap.add_argument("--health-path", default="/healthz")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("-c", "--concurrency", default="1,16,64")
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--prior-turns", type=int, default=3, help="turns each thread has before the window")
    ap.add_argument("--op", default="continue", choices=["continue", "create"], help="continue a thread, or start new ones")
    ap.add_argument("--db-cpu", action="store_true", help="also measure the local PostgreSQL server's CPU")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--llm-port", type=int, default=9100)
    ap.add_argument("--server-cpus", default=None)
    ap.add_argument("--harness-cpus", default=None)
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    if args.harness_cpus:
        os.sched_setaffinity(0, {int(c) for c in args.harness_cpus.split(",")})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    jsonl, logf = out.with_suffix(".jsonl"), out.with_suffix(".log")
    for f in (jsonl, logf):
        if f.exists():
            f.unlink()
    llm_url = f"http://127.0.0.1:{args.llm_port}/v1"
    base_env = dict(os.environ, PYTHONUNBUFFERED="1")
    pin_h = ["taskset", "-c", args.harness_cpus] if args.harness_cpus else []
    llm = peer_bench.Proc(" ".join(["exec", *pin_h, sys.executable, str(PEER / "fake_llm.py"), "--port", str(args.llm_port)]), base_env, logf)
    if not peer_bench.wait_http(f"http://127.0.0.1:{args.llm_port}/healthz"):
        llm.stop()
        raise SystemExit(f"the fake model did not start; see {logf}")
    cmd = args.server_cmd.format(port=args.port, llm_url=llm_url, workers=1)
    if args.server_cpus:
        cmd = f"exec taskset -c {args.server_cpus} sh -c {shlex.quote(cmd)}"
    senv = dict(base_env, OPENAI_BASE_URL=llm_url, OPENAI_API_KEY="x", PEER_LLM_BASE_URL=llm_url)
    args.url = f"http://127.0.0.1:{args.port}{args.path}"
    try:
        for rep in range(args.reps):
            for c in [int(x) for x in args.concurrency.split(",")]:
                srv = peer_bench.Proc(cmd, senv, logf)
                try:
                    if not peer_bench.wait_http(f"http://127.0.0.1:{args.port}{args.health_path}", 60):
                        raise SystemExit(f"the server did not come up: {cmd}; see {logf}")
                    time.sleep(0.5)
                    server_pid = load.pid_listening_on(args.port) or srv.pid
                    row = asyncio.run(run_window(args, c, server_pid, llm.pid))
                    row["label"] = f"{args.label} rep={rep}"
                    with open(jsonl, "a") as f:
                        f.write(json.dumps(row) + "\n")
                    s, t = row["server"], row["ttfe_ms"] or {}
                    db = f" db cpu/req={row['db']['cpu_ms_per_req']}ms" if row.get("db") else ""
                    print(
                        f"{row['label']} {row['op']} c={c} rps={row['rps']} n={row['requests']} err={sum(row['errors'].values())} "
                        f"ttfe50={t.get('p50')}ms ttfe99={t.get('p99')}ms srv cpu/req={s['cpu_ms_per_req']}ms{db} "
                        f"rss={s['rss_peak_window_mb']}MB turns/thread at end={row['turns_per_thread_at_end']}",
                        file=sys.stderr,
                        flush=True,
                    )
                    if row["errors"]:
                        print(f"  errors: {row['errors']} {row['error_samples'][:2]}", file=sys.stderr)
                finally:
                    srv.stop()
                time.sleep(0.5)
    finally:
        llm.stop()
    subprocess.run([sys.executable, str(PEER / "report.py"), str(jsonl)], check=False)


if __name__ == "__main__":
    main()
