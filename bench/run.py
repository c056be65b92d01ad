#!/usr/bin/env python3
"""Runs the load-benchmark scenarios on loopback and writes bench/results/latest.{json,md,png}.

Started by bench/run.sh (which installs wrk, nginx, redis-server, the FastAPI and Express peers,
and builds Warden and the upstream). Every scenario serves GET /api/v1/agents/42 with the same
small JSON body, except warden-chat, which POSTs a 1 KB Chat Completions request
(bench/chat-1k.json) to /v1/chat/completions and gets a chat answer; the load generator is wrk with a fixed number of connections and duration,
repeated; for each scenario the server's CPU seconds per 10k requests (all of its processes)
and its peak resident memory are read from /proc.
"""

import argparse
import json
import os
import platform
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RELEASE = ROOT / "target" / "release"
VENV_BIN = Path(sys.executable).parent
PATH = "/api/v1/agents/42"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def cpu_split():
    """(cores for the load generator and the upstream, cores for the server under test), or
    None when not pinned. BENCH_PIN=0 turns pinning off; with one core there is nothing to split.
    The server gets the upper half of the cores this process may use: on 2 cores, wrk and the
    upstream share core 0 and the server has core 1 to itself, so its CPU figures do not depend
    on where the scheduler put the load generator."""
    cores = sorted(os.sched_getaffinity(0))
    if os.environ.get("BENCH_PIN", "1") == "0" or len(cores) < 2:
        return None
    half = len(cores) // 2
    return cores[:half], cores[half:]


PIN = cpu_split()


def pinned(cmd, cores):
    if PIN is None:
        return cmd
    return ["taskset", "-c", ",".join(map(str, cores))] + list(cmd)


def start(cmd, env=None, cwd=None, log=None, load=False) -> subprocess.Popen:
    """Starts a server (pinned to the server's cores; load=True: the load side's)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    out = open(log, "wb") if log else subprocess.DEVNULL
    if PIN is not None:
        cmd = pinned(cmd, PIN[0] if load else PIN[1])
    return subprocess.Popen(
        cmd, env=full_env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def process_tree(root: int) -> list:
    """root and all its descendants (uvicorn and nginx run worker processes)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def cpu_seconds(pids) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def memory_kib(pids, field: str) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def wrk(url: str, connections: int, seconds: int, headers: dict) -> dict:
    env = dict(os.environ)
    env["BENCH_AUTHORIZATION"] = headers.get("authorization", "")
    env["BENCH_ORIGIN"] = headers.get("origin", "")
    env["BENCH_CONNECTION"] = headers.get("connection", "")
    env["BENCH_BODY_FILE"] = headers.get("body", "")
    threads = min(2, connections)
    out = subprocess.run(
        pinned(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
                "-s", str(BENCH / "wrk" / "report.lua"), url], PIN[0] if PIN else []),
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    line = next((l for l in out.splitlines() if l.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"no summary from wrk:\n{out}")
    return json.loads(line[len("WRK_JSON "):])


def check(url: str, headers: dict, tls=None) -> None:
    """One request first: a scenario that answers 401 or 404 would measure the wrong thing. And
    where a token is sent, a request without one must be refused: the protection is really on.
    Over https the benchmark's own certificate is trusted and verified (`tls`: an SSL context)."""
    payload = Path(headers["body"]).read_bytes() if "body" in headers else None
    kind = {"content-type": "application/json"} if payload is not None else {}
    sent = {k: v for k, v in headers.items() if k not in ("body", "path")}
    request = urllib.request.Request(url, data=payload, headers={**sent, **kind})
    with urllib.request.urlopen(request, timeout=5, context=tls) as response:
        body = response.read()
        if response.status != 200 or b"ok" not in body:
            raise RuntimeError(f"{url}: {response.status} {body[:200]!r}")
    if "authorization" in headers:
        try:
            urllib.request.urlopen(urllib.request.Request(url, data=payload, headers=kind),
                                   timeout=5, context=tls)
        except urllib.error.HTTPError as refused:
            if refused.code != 401:
                raise RuntimeError(f"{url} without a token: {refused.code}, expected 401") from None
        else:
            raise RuntimeError(f"{url} without a token: 200, authentication is not enforced")


class Setup:
    """Keys, token and the services every scenario shares."""

    def __init__(self, work: Path):
        self.work = work
        self.procs = []
        keys = work / "keys"
        subprocess.run(
            [str(RELEASE / "warden"), "token", "keygen", "--alg", "RS256", "--kid", "bench",
             "--out", str(keys)], check=True, capture_output=True,
        )
        self.jwks = keys / "jwks.json"
        self.token = subprocess.run(
            [str(RELEASE / "warden"), "token", "mint", "--config", str(BENCH / "configs" / "mint.yaml"),
             "--key", str(keys / "bench.pem"), "--kid", "bench", "--sub", "bench-user",
             "--roles", "viewer", "--ttl", "4h"],
            env={**os.environ, "BENCH_JWKS": str(self.jwks)},
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        self.upstream_port = free_port()
        # The upstream is part of the test bench, not the server under test: on the load side.
        upstream = start([str(RELEASE / "examples" / "bench_upstream"), f"127.0.0.1:{self.upstream_port}"],
                         load=True)
        self.procs.append(upstream)
        wait_port(self.upstream_port, upstream)
        # The TLS scenarios' certificate (localhost and 127.0.0.1, self-signed).
        self.tls_dir = work / "tls"
        subprocess.run([str(RELEASE / "examples" / "bench_cert"), str(self.tls_dir)], check=True)
        self.tls_env = {
            "WARDEN_SERVER__TLS__CERT": str(self.tls_dir / "cert.pem"),
            "WARDEN_SERVER__TLS__KEY": str(self.tls_dir / "key.pem"),
        }
        self.redis_port = free_port()
        redis = start(["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port),
                       "--save", "", "--appendonly", "no"], load=True)
        self.procs.append(redis)
        wait_port(self.redis_port, redis)

    def close(self):
        for proc in self.procs:
            stop(proc)

    @property
    def upstream(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}"


WARDEN = Path(os.environ.get("BENCH_WARDEN", RELEASE / "warden"))


def warden(setup: Setup, config: str, extra_env: dict):
    port = free_port()
    env = {
        "BENCH_LISTEN": f"127.0.0.1:{port}",
        "BENCH_ADMIN": f"127.0.0.1:{free_port()}",
        "BENCH_UPSTREAM": setup.upstream,
        "BENCH_JWKS": str(setup.jwks),
        "BENCH_RATE_STORE": "memory",
        "RUST_LOG": "info",
    }
    env.update(extra_env)
    proc = start([str(WARDEN), "serve", "--config", str(BENCH / "configs" / config)], env=env,
                 log=setup.work / f"warden-{config}.log")
    return proc, port


def scenarios(setup: Setup):
    """(name, description, starter returning (process or None, port), request headers[, scheme])"""
    auth = {"authorization": f"Bearer {setup.token}", "origin": "https://app.example.com"}
    chat_headers = {**auth, "body": str(BENCH / "chat-1k.json"), "path": "/v1/chat/completions"}

    def direct():
        return None, setup.upstream_port

    def passthrough():
        return warden(setup, "passthrough.yaml", {})

    def full_cached():
        return warden(setup, "full.yaml", {})

    def full_one_worker():
        return warden(setup, "full.yaml", {"WARDEN_SERVER__WORKERS": "1"})

    def passthrough_one_worker():
        return warden(setup, "passthrough.yaml", {"WARDEN_SERVER__WORKERS": "1"})

    def full_uncached():
        return warden(setup, "full.yaml", {"WARDEN_AUTH__TOKEN_CACHE": "0"})

    def full_audit():
        trail = setup.work / "audit.jsonl"
        trail.unlink(missing_ok=True)
        return warden(setup, "full-audit.yaml", {"BENCH_AUDIT": str(trail)})

    def chat():
        return warden(setup, "chat.yaml", {})

    def full_tls():
        return warden(setup, "full.yaml", setup.tls_env)

    def full_redis():
        return warden(setup, "full.yaml", {"BENCH_RATE_STORE": f"redis://127.0.0.1:{setup.redis_port}"})

    def nginx(workers="auto"):
        prefix = setup.work / "nginx"
        prefix.mkdir(exist_ok=True)
        port = free_port()
        conf = (BENCH / "peers" / "nginx.conf.template").read_text()
        conf = conf.replace("@PREFIX@", str(prefix)).replace("@LISTEN@", f"127.0.0.1:{port}")
        conf = conf.replace("@WORKERS@", workers)
        conf = conf.replace("@UPSTREAM@", f"127.0.0.1:{setup.upstream_port}")
        (prefix / "nginx.conf").write_text(conf)
        binary = "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "nginx"
        return start([binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")]), port

    def fastapi():
        port = free_port()
        return start(
            [str(VENV_BIN / "python"), "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "2", "--no-access-log", "--log-level", "warning"],
            env={"BENCH_JWKS": str(setup.jwks)}, cwd=BENCH / "peers" / "fastapi",
            log=setup.work / "fastapi.log",
        ), port

    def express():
        port = free_port()
        return start(
            ["node", "server.js"],
            env={"BENCH_JWKS": str(setup.jwks), "BENCH_UPSTREAM": setup.upstream,
                 "BENCH_LISTEN": f"127.0.0.1:{port}", "NODE_ENV": "production"},
            cwd=BENCH / "peers" / "express", log=setup.work / "express.log",
        ), port

    return [
        ("direct", "the upstream alone (the machine's limit)", direct, {}),
        ("warden-passthrough", "Warden, no auth, no limits", passthrough, {}),
        ("warden-passthrough-1w", "the same, one worker thread", passthrough_one_worker, {}),
        ("warden-full", "Warden: RS256 JWT (cached), RBAC, memory rate limit, CORS, headers", full_cached, auth),
        ("warden-full-1w", "the same, one worker thread", full_one_worker, auth),
        ("warden-full-uncached", "the same, JWT verified on every request", full_uncached, auth),
        ("warden-full-redis", "the same (JWT cached), rate limit in Redis", full_redis, auth),
        ("warden-full-audit", "the same (JWT cached), every request in a hash-chained audit file", full_audit, auth),
        ("warden-full-tls", "the same (JWT cached) over TLS 1.3, keep-alive", full_tls, auth, "https"),
        ("warden-chat", "the same (JWT cached), POST of a 1 KB OpenAI chat body: body rules, model allow list, "
         "injection, credential and PII inspection both ways, token budget", chat, chat_headers),
        ("warden-full-newconn", "the same (JWT cached), a new TCP connection per request", full_cached,
         {**auth, "connection": "close"}),
        ("warden-full-tls-newconn", "the same over TLS, a new connection and full handshake per request",
         full_tls, {**auth, "connection": "close"}, "https"),
        ("nginx", "nginx plain reverse proxy, no security features (worker_processes auto)", nginx, {}),
        ("nginx-1w", "the same, worker_processes 1", lambda: nginx("1"), {}),
        ("fastapi", "FastAPI in-app: PyJWT RS256, RBAC, slowapi, CORS, headers (uvicorn, 2 workers)", fastapi, auth),
        ("express", "Express proxy: jose RS256, RBAC, express-rate-limit, helmet, cors, http-proxy-middleware", express, auth),
    ]


def run_scenario(name, starter, headers, args, scheme="http", tls=None) -> dict:
    proc, port = starter()
    try:
        if proc is not None:
            wait_port(port, proc)
        url = f"{scheme}://127.0.0.1:{port}{headers.get('path', PATH)}"
        check(url, headers, tls if scheme == "https" else None)
        pids = process_tree(proc.pid) if proc is not None else []
        time.sleep(0.5)
        idle_rss = memory_kib(pids, "VmRSS")
        wrk(url, args.connections, 2, headers)  # warm-up
        reps = []
        cpu_before = cpu_seconds(process_tree(proc.pid)) if proc else 0.0
        for _ in range(args.reps):
            reps.append(wrk(url, args.connections, args.duration, headers))
        pids = process_tree(proc.pid) if proc is not None else []
        cpu = cpu_seconds(pids) - cpu_before if proc else 0.0
        peak_rss = memory_kib(pids, "VmHWM")
        moderate = wrk(url, args.moderate, args.duration, headers)
        requests = sum(r["requests"] for r in reps)
        bad = sum(r["errors"] + r["non_2xx"] for r in reps + [moderate])
        if bad:
            raise RuntimeError(f"{name}: {bad} failed or non-2xx responses")
        return {
            "rps": statistics.median(r["rps"] for r in reps),
            "rps_all": [r["rps"] for r in reps],
            "p50_ms": statistics.median(r["p50_us"] for r in reps) / 1000,
            "p99_ms": statistics.median(r["p99_us"] for r in reps) / 1000,
            "p999_ms": statistics.median(r["p999_us"] for r in reps) / 1000,
            "moderate_p50_ms": moderate["p50_us"] / 1000,
            "moderate_p99_ms": moderate["p99_us"] / 1000,
            "moderate_rps": moderate["rps"],
            "cpu_s_per_10k": (cpu / requests * 10_000) if proc else None,
            "peak_rss_mb": peak_rss / 1024 if proc else None,
            "idle_rss_mb": idle_rss / 1024 if proc else None,
        }
    finally:
        if proc is not None:
            stop(proc)


def merge_rounds(runs: list) -> dict:
    """One scenario's rounds: the median of each figure, and every round's CPU and req/s."""
    merged = {}
    for key, value in runs[0].items():
        if isinstance(value, (int, float)):
            merged[key] = statistics.median(r[key] for r in runs)
        else:
            merged[key] = value
    merged["rounds"] = len(runs)
    merged["rps_rounds"] = [r["rps"] for r in runs]
    merged["cpu_rounds"] = [r["cpu_s_per_10k"] for r in runs]
    return merged


def versions() -> dict:
    def out(cmd):
        """First line a command prints about itself (some print to stderr)."""
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError:
            return "not found"
        text = (done.stdout.strip() or done.stderr.strip()).splitlines()
        return text[0] if text else "unknown"

    nginx = "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "nginx"
    return {
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, {platform.platform()}",
        "cpu": next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                     if l.startswith("model name")), "unknown"),
        "rustc": out(["rustc", "--version"]),
        "wrk": out(["wrk", "--version"]),
        "nginx": out([nginx, "-v"]),
        "python": sys.version.split()[0],
        "node": out(["node", "--version"]),
        "redis": out(["redis-server", "--version"]),
    }


def table(results: dict, args) -> str:
    direct = results.get("direct", {}).get("rps")
    pin = (f"load generator and upstream on cores {','.join(map(str, PIN[0]))}, servers on "
           f"{','.join(map(str, PIN[1]))}" if PIN else "not pinned")
    lines = [
        f"{args.connections} connections, {args.reps} × {args.duration} s per scenario (median shown)"
        + (f", {args.rounds} alternating rounds (median of rounds)" if args.rounds > 1 else "")
        + f"; moderate load: {args.moderate} connections; {pin}.",
        "",
        "| scenario | req/s | vs direct | p50 ms | p99 ms | p99.9 ms | p99 ms at moderate load | CPU s / 10k req | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | | | | | | |")
            continue
        ratio = f"{r['rps'] / direct:.2f}" if direct else ""
        cpu = f"{r['cpu_s_per_10k']:.2f}" if r["cpu_s_per_10k"] is not None else "—"
        rss = f"{r['peak_rss_mb']:.1f}" if r["peak_rss_mb"] is not None else "—"
        lines.append(
            f"| {name} | {r['rps']:,.0f} | {ratio} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['p999_ms']:.2f} | {r['moderate_p99_ms']:.2f} | {cpu} | {rss} |"
        )
    warden = results.get("warden-full", {})
    if "rps" in warden:
        lines += ["", "Warden full pipeline (JWT cached) compared with each peer:", "",
                  "| peer | Warden req/s ÷ peer req/s | peer p99 ÷ Warden p99 |", "|---|---|---|"]
        for peer in ("nginx", "nginx-1w", "fastapi", "express"):
            r = results.get(peer, {})
            if "rps" in r:
                lines.append(f"| {peer} | {warden['rps'] / r['rps']:.2f} | {r['p99_ms'] / warden['p99_ms']:.2f} |")
    return "\n".join(lines) + "\n"


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, r in results.items() if "rps" in r]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    colors = ["#4c72b0" if n.startswith("warden") else "#999999" for n in names]
    left.barh(names, [results[n]["rps"] for n in names], color=colors)
    left.set_xlabel("requests per second (higher is better)")
    left.invert_yaxis()
    right.barh(names, [results[n]["p99_ms"] for n in names], color=colors)
    right.set_xlabel("p99 latency, ms (lower is better)")
    right.invert_yaxis()
    right.set_yticklabels([])
    fig.suptitle("GET /api/v1/agents/42 on loopback, same machine, same run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=int(os.environ.get("BENCH_CONNECTIONS", 64)))
    parser.add_argument("--moderate", type=int, default=int(os.environ.get("BENCH_MODERATE", 4)))
    parser.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_DURATION", 8)))
    parser.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", 3)))
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 1)),
                        help="run the scenarios this many times, alternating (A/B comparisons); "
                             "each figure is the median of the rounds")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--out", default=str(BENCH / "results"))
    args = parser.parse_args()
    only = {s for s in args.only.split(",") if s}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    results = {}
    with tempfile.TemporaryDirectory(prefix="warden-bench-") as tmp:
        setup = Setup(Path(tmp))
        try:
            tls = ssl.create_default_context(cafile=str(setup.tls_dir / "cert.pem"))
            rounds = {}
            for round_ in range(args.rounds):
                for name, description, starter, headers, *scheme in scenarios(setup):
                    if only and name not in only:
                        continue
                    print(f"== {name}: {description}" + (f" (round {round_ + 1})" if args.rounds > 1 else ""),
                          flush=True)
                    try:
                        r = run_scenario(name, starter, headers, args, *scheme, tls=tls)
                        rounds.setdefault(name, []).append(r)
                        print(f"   {r['rps']:,.0f} req/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                              f"p99.9 {r['p999_ms']:.2f} ms  CPU {r['cpu_s_per_10k'] or 0:.2f} s/10k", flush=True)
                    except Exception as exc:  # one broken peer must not lose the others' numbers
                        results[name] = {"error": str(exc)[:200]}
                        print(f"   failed: {exc}", flush=True)
            for name, runs in rounds.items():
                if "error" not in results.get(name, {}):
                    results[name] = merge_rounds(runs)
        finally:
            setup.close()

    report = {"versions": versions(), "settings": vars(args), "results": results,
              "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (out / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    md = table(results, args)
    (out / "latest.md").write_text(md)
    try:
        chart(results, out / "latest.png")
    except Exception as exc:
        print(f"chart not rendered: {exc}")
    print()
    print(md)
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
