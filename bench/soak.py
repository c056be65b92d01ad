#!/usr/bin/env python3
"""The soak: the full pipeline with its audit file (bench/configs/full-audit.yaml) under a steady,
moderate load for a long time, sampling the gateway every 10 s; fails when memory, descriptors or
tasks keep growing after the warm-up.

Started by bench/soak.sh. Three wrk loads run side by side for the whole time:
  - keep-alive clients with a valid token (8 connections, a pause of 4 ms before each request);
  - a new connection per request with a valid token (2 connections, 20 ms): connection churn;
  - keep-alive clients with a forged token (2 connections, 20 ms): the 401 path and its events.
Each sample: resident memory (VmRSS), open file descriptors, threads, the runtime's alive tasks
(warden_runtime_alive_tasks on /metrics) and the request rate since the last sample. Written to
bench/results/soak.{json,png}.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BENCH, PATH, Setup, check, memory_kib, stop, wait_port, warden  # noqa: E402


def metric(page: str, name: str) -> float:
    total = 0.0
    for line in page.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def sample(pid: int, admin: str) -> dict:
    page = urllib.request.urlopen(f"http://{admin}/metrics", timeout=5).read().decode()
    status = Path(f"/proc/{pid}/status").read_text()
    threads = next(int(l.split()[1]) for l in status.splitlines() if l.startswith("Threads:"))
    return {
        "rss_kib": memory_kib([pid], "VmRSS"),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": threads,
        "tasks": int(metric(page, "warden_runtime_alive_tasks")),
        "requests": int(metric(page, "warden_requests_total")),
    }


def load(url: str, seconds: int, connections: int, delay_ms: int, headers: dict) -> subprocess.Popen:
    env = dict(os.environ)
    env.update({
        "BENCH_AUTHORIZATION": headers.get("authorization", ""),
        "BENCH_ORIGIN": headers.get("origin", ""),
        "BENCH_CONNECTION": headers.get("connection", ""),
        "BENCH_DELAY_MS": str(delay_ms),
    })
    return subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
         "-s", str(BENCH / "wrk" / "report.lua"), url],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def summary(proc: subprocess.Popen) -> dict:
    out = proc.communicate()[0]
    line = next((l for l in out.splitlines() if l.startswith("WRK_JSON ")), None)
    return json.loads(line[len("WRK_JSON "):]) if line else {"error": out[-500:]}


def chart(samples: list, warmup: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] / 60 for s in samples]
    fig, axes = plt.subplots(2, 2, figsize=(12, 7), sharex=True)
    series = [
        ("resident memory, MB", [s["rss_kib"] / 1024 for s in samples]),
        ("open file descriptors", [s["fds"] for s in samples]),
        ("runtime tasks alive", [s["tasks"] for s in samples]),
        ("requests per second", [s["rps"] for s in samples]),
    ]
    for ax, (label, values) in zip(axes.flat, series):
        # The first sample has no rate (nothing before it to count from).
        skip = 1 if label.startswith("requests") else 0
        ax.plot(t[skip:], values[skip:], color="#4c72b0")
        ax.axvline(warmup / 60, color="#999999", linestyle="--", linewidth=1)
        ax.set_ylabel(label)
        ax.set_ylim(0, max(values) * 1.15 or 1)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("minutes (dashed: end of warm-up)")
    fig.suptitle("Soak: full pipeline with audit file, steady moderate load, sampled every 10 s")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("SOAK_SECONDS", 1200)))
    parser.add_argument("--warmup", type=int, default=int(os.environ.get("SOAK_WARMUP", 120)))
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--out", default=str(BENCH / "results"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    samples = []
    with tempfile.TemporaryDirectory(prefix="warden-soak-") as tmp:
        setup = Setup(Path(tmp))
        try:
            proc, port = warden(setup, "full-audit.yaml", {"BENCH_AUDIT": str(Path(tmp) / "audit.jsonl"),
                                                           "RUST_LOG": "warn"})
            wait_port(port, proc)
            # The admin address warden() chose is in the process's environment.
            environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
            admin = next(e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"BENCH_ADMIN="))
            url = f"http://127.0.0.1:{port}{PATH}"
            auth = {"authorization": f"Bearer {setup.token}", "origin": "https://app.example.com"}
            check(url, auth)
            forged = setup.token[:-4] + ("AAAA" if not setup.token.endswith("AAAA") else "BBBB")
            loads = [
                load(url, args.seconds, 8, 4, auth),
                load(url, args.seconds, 2, 20, {**auth, "connection": "close"}),
                load(url, args.seconds, 2, 20, {"authorization": f"Bearer {forged}"}),
            ]
            started = time.monotonic()
            last = None
            while time.monotonic() - started < args.seconds - 1:
                time.sleep(args.every - ((time.monotonic() - started) % args.every))
                s = sample(proc.pid, admin)
                s["t"] = round(time.monotonic() - started)
                s["rps"] = 0 if last is None else round((s["requests"] - last["requests"]) / (s["t"] - last["t"]))
                samples.append(s)
                last = s
                print(f"{s['t']:5d} s  rss {s['rss_kib'] / 1024:6.1f} MB  fds {s['fds']:4d}  "
                      f"threads {s['threads']:3d}  tasks {s['tasks']:4d}  {s['rps']:6d} req/s", flush=True)
            results = [summary(p) for p in loads]
            stop(proc)
        finally:
            setup.close()

    after = [s for s in samples if s["t"] >= args.warmup]
    if len(after) < 2:
        print("too short a run for a verdict")
        return 1
    first, end = after[0], after[-1]
    peak = max(s["rss_kib"] for s in after)
    verdict = {
        # Growth after the warm-up: allocator noise is a few hundred KiB; a leak of one small
        # object per request is megabytes over a run of millions of requests.
        "rss_growth_kib": end["rss_kib"] - first["rss_kib"],
        "rss_peak_kib": peak,
        "fds_range": [min(s["fds"] for s in after), max(s["fds"] for s in after)],
        "tasks_range": [min(s["tasks"] for s in after), max(s["tasks"] for s in after)],
        "requests": samples[-1]["requests"],
    }
    ok = (verdict["rss_growth_kib"] <= max(2048, first["rss_kib"] // 10)
          and verdict["fds_range"][1] - verdict["fds_range"][0] <= 32
          and verdict["tasks_range"][1] - verdict["tasks_range"][0] <= 64)
    report = {"settings": vars(args), "samples": samples, "loads": results, "verdict": verdict,
              "ok": ok, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    try:
        chart(samples, args.warmup, out / "soak.png")
    except Exception as exc:
        print(f"chart not rendered: {exc}")
    print(json.dumps({"loads": results, "verdict": verdict, "ok": ok}, indent=2))
    print(f"RSS at the end of the warm-up {first['rss_kib'] / 1024:.1f} MB, at the end "
          f"{end['rss_kib'] / 1024:.1f} MB; {'no growth' if ok else 'GROWTH'} after warm-up")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
