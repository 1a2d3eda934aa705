#!/usr/bin/env python3
"""The benchmark behind bench/run (standard library only).

Starts on loopback a backend (nginx), Redis, and three proxies in front of
the same backend (nginx, HAProxy, hipache in `strict` and in `tracking`
route-cache mode), runs every test interleaved over the targets, and prints
a Markdown report. bench/run installs the tools, builds the binaries, sets
`ulimit -n`, owns the EXIT trap and the overall timeout; this script records
every process id it starts in --pids so that the trap can stop them too.

CPU layout (2 cores): proxies and redis-server on CPU 0; the load generator
(wrk, loadgen) and the backend on CPU 1.
"""

import argparse
import datetime
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import http.client

PROXY_CPU = "0"
CLIENT_CPU = "1"
CONNS = 50
IDLE_CONNS = 10_000
FRONTENDS = 100_000
HOST = "bench.local"
# A host served by a route document of 20 rules (test_document), and one
# served by a plain list with as many labels (so as many candidates read).
DOC_HOST = "doc.bench.local"
H2_HOST = "h2.bench.local"
# h2load: connections and streams per connection of the HTTP/2 case.
H2_CONNS, H2_STREAMS = 10, 10
LIST_HOST = "list.bench.local"
# A host whose document has an allow-list, a fleet-wide rate limit and CORS
# (test_policies).
POLICY_HOST = "policy.bench.local"
CLK_TCK = os.sysconf("SC_CLK_TCK")
BODY_A = "hipache-bench backend-a " + "a" * 75 + "\n"   # 100 bytes
BODY_B = "hipache-bench backend-b " + "b" * 75 + "\n"   # 100 bytes
BIG_BYTES = 1 << 20

TARGETS = ["direct", "nginx", "haproxy", "hipache-strict", "hipache-tracking"]
PROXIES = TARGETS[1:]
HIPACHES = ["hipache-strict", "hipache-tracking"]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, a):
        self.a = a
        self.tmp = a.tmp
        self.procs = {}          # name -> Popen
        self.ports = {}
        self.results = {}        # test -> target -> [dict per round]
        self.extra = {}
        self.quick = a.quick
        if a.quick:
            self.rounds, self.dur, self.rate_dur, self.big_rounds = 1, 3, 4, 1
            self.idle_hold, self.fresh_trials, self.warm = 3, 200, 1
        else:
            self.rounds, self.dur, self.rate_dur, self.big_rounds = 5, 8, 10, 3
            self.idle_hold, self.fresh_trials, self.warm = 4, 1000, 2
        if a.rounds:
            self.rounds = a.rounds
        if a.duration:
            self.dur = a.duration

    # ------------------------------------------------------------ processes

    def record_pid(self, pid, name):
        with open(self.a.pids, "a") as f:
            f.write(f"{pid} {name}\n")

    def spawn(self, name, argv, cpu, env=None, cwd=None):
        out = open(os.path.join(self.tmp, f"{name}.out"), "w")
        p = subprocess.Popen(["taskset", "-c", cpu] + argv, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env, cwd=cwd or self.tmp)
        self.record_pid(p.pid, os.path.basename(argv[0]))
        self.procs[name] = p
        return p

    def stop_all(self):
        for name, p in list(self.procs.items()):
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 10
        for name, p in list(self.procs.items()):
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                log(f"{name} (pid {p.pid}) did not stop on SIGTERM: SIGKILL")
                p.kill()
                p.wait()
        self.procs.clear()

    def pids_of(self, target):
        """Process ids that make up a target (a master and its workers)."""
        name = {"direct": "backend"}.get(target, target)
        p = self.procs[name]
        pids = [p.pid]
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        st = f.read()
                    ppid = int(st[st.rindex(")") + 2:].split()[1])
                    if ppid == p.pid:
                        pids.append(int(d))
                except (OSError, ValueError):
                    pass
        return pids

    @staticmethod
    def ticks(pids):
        t = 0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    st = f.read()
                fields = st[st.rindex(")") + 2:].split()
                t += int(fields[11]) + int(fields[12])    # utime + stime
            except (OSError, ValueError):
                pass
        return t

    @staticmethod
    def rss_kb(pids):
        kb = 0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            kb += int(line.split()[1])
            except OSError:
                pass
        return kb

    def cpu_pids(self, target):
        """CPU is charged to the proxy, plus redis-server for hipache."""
        pids = self.pids_of(target)
        if target in HIPACHES:
            pids += [self.procs["redis"].pid]
        return pids

    def wait_port(self, port, name, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for n, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{n} exited with {p.returncode}; see {self.tmp}/{n}.out")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{name} is not listening on {port} after {timeout}s")

    def get(self, port, host=HOST, path="/"):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", path, headers={"Host": host})
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body

    # ------------------------------------------------------------ setup

    def free_ports(self, n):
        while True:
            base = random.randrange(20000, 30000 - n)
            ok = True
            for port in range(base, base + n):
                s = socket.socket()
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                finally:
                    s.close()
            if ok:
                return list(range(base, base + n))

    def start(self):
        names = ["direct", "backend-b", "redis", "nginx", "haproxy", "hipache-strict", "hipache-tracking",
                 "h2-backend", "nginx-h2"]
        self.ports = dict(zip(names, self.free_ports(len(names))))
        P = self.ports
        user = "user root;" if os.geteuid() == 0 else ""

        # Backend: nginx, one worker, fixed 100-byte 200 on /, 1 MiB on /big.
        bdir = os.path.join(self.tmp, "backend")
        os.makedirs(os.path.join(bdir, "www"), exist_ok=True)
        os.makedirs(os.path.join(bdir, "logs"), exist_ok=True)
        with open(os.path.join(bdir, "www", "big"), "wb") as f:
            f.write(os.urandom(BIG_BYTES))
        with open(os.path.join(bdir, "nginx.conf"), "w") as f:
            f.write(f"""{user}
worker_processes 1;
pid {bdir}/nginx.pid;
error_log {bdir}/logs/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 10000; }}
http {{
    access_log off;
    client_body_temp_path {bdir}/tmp_body;
    proxy_temp_path {bdir}/tmp_proxy;
    fastcgi_temp_path {bdir}/tmp_fcgi;
    uwsgi_temp_path {bdir}/tmp_uwsgi;
    scgi_temp_path {bdir}/tmp_scgi;
    default_type text/plain;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{P['direct']} backlog=4096;
        location = / {{ return 200 "{BODY_A.strip()}\\n"; }}
        location = /big {{ root {bdir}/www; }}
    }}
    server {{
        listen 127.0.0.1:{P['backend-b']} backlog=4096;
        location / {{ return 200 "{BODY_B.strip()}\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{P['h2-backend']} http2 backlog=4096;
        location / {{ return 200 "{BODY_A.strip()}\\n"; }}
    }}
}}
""")
        self.spawn("backend", ["nginx", "-p", bdir, "-c", f"{bdir}/nginx.conf", "-g", "daemon off;"], CLIENT_CPU)

        # Redis, no persistence.
        rdir = os.path.join(self.tmp, "redis")
        os.makedirs(rdir, exist_ok=True)
        self.spawn("redis", ["redis-server", "--port", str(P["redis"]), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", rdir,
                             "--maxclients", "1000", "--protected-mode", "no"], PROXY_CPU)

        # nginx as the proxy: one worker, upstream keep-alive, forwarded headers.
        ndir = os.path.join(self.tmp, "nginx")
        os.makedirs(os.path.join(ndir, "logs"), exist_ok=True)
        with open(os.path.join(ndir, "nginx.conf"), "w") as f:
            f.write(f"""{user}
worker_processes 1;
pid {ndir}/nginx.pid;
error_log {ndir}/logs/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 15000; }}
http {{
    access_log off;
    client_body_temp_path {ndir}/tmp_body;
    proxy_temp_path {ndir}/tmp_proxy;
    fastcgi_temp_path {ndir}/tmp_fcgi;
    uwsgi_temp_path {ndir}/tmp_uwsgi;
    scgi_temp_path {ndir}/tmp_scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    upstream backend {{
        server 127.0.0.1:{P['direct']};
        keepalive 64;
        keepalive_requests 100000000;
    }}
    server {{
        listen 127.0.0.1:{P['nginx']} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_buffer_size 16k;
            proxy_buffers 8 16k;
            proxy_max_temp_file_size 0;
        }}
    }}
    # HTTP/2 both ways: h2c from the client, h2 to the backend (grpc_pass is
    # nginx's one HTTP/2 upstream).
    upstream h2backend {{
        server 127.0.0.1:{P['h2-backend']};
        keepalive 64;
        keepalive_requests 100000000;
    }}
    server {{
        listen 127.0.0.1:{P['nginx-h2']} http2 backlog=4096;
        location / {{
            grpc_pass grpc://h2backend;
            grpc_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            grpc_set_header X-Real-IP $remote_addr;
        }}
    }}
}}
""")
        self.spawn("nginx", ["nginx", "-p", ndir, "-c", f"{ndir}/nginx.conf", "-g", "daemon off;"], PROXY_CPU)

        # HAProxy: http mode, keep-alive both sides, one thread.
        hcfg = os.path.join(self.tmp, "haproxy.cfg")
        with open(hcfg, "w") as f:
            f.write(f"""global
    nbthread 1
    maxconn {IDLE_CONNS + 200}
    no strict-limits

defaults
    mode http
    maxconn {IDLE_CONNS + 200}
    option http-keep-alive
    option forwardfor
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    http-reuse safe

frontend fe
    bind 127.0.0.1:{P['haproxy']}
    http-request set-header X-Real-IP %[src]
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Port %[dst_port]
    default_backend be

backend be
    server s1 127.0.0.1:{P['direct']}
""")
        self.spawn("haproxy", ["haproxy", "-db", "-f", hcfg], PROXY_CPU)

        self.wait_port(P["redis"], "redis")
        self.redis_cli("RPUSH", f"frontend:{HOST}", "bench", f"http://127.0.0.1:{P['direct']}")

        # hipache, one process per route-cache mode, same Redis.
        hbin = os.path.join(self.tmp, "hipache")
        shutil.copy(self.a.hipache, hbin)       # others may rebuild target/ meanwhile
        env = dict(os.environ, HIPACHE_LOG=os.environ.get("HIPACHE_LOG", "warn"))
        for name, mode in (("hipache-strict", "strict"), ("hipache-tracking", "tracking")):
            cfg = os.path.join(self.tmp, f"{name}.json")
            with open(cfg, "w") as f:
                json.dump({"http": {"port": P[name], "bind": ["127.0.0.1"]},
                           "driver": f"redis://127.0.0.1:{P['redis']}",
                           "server": {"accessLog": None, "adminAddress": None, "workers": 0,
                                      "routeCache": mode}}, f, indent=2)
            self.spawn(name, [hbin, "--config", cfg], PROXY_CPU, env=env)

        for name in ["direct", "backend-b", "nginx", "haproxy", "h2-backend", "nginx-h2"] + HIPACHES:
            self.wait_port(P[name], name)
        for t in TARGETS:
            status, body = self.get(P[t])
            if status != 200 or b"backend-a" not in body:
                raise RuntimeError(f"{t}: unexpected answer {status} {body[:200]!r}")
            status, body = self.get(P[t], path="/big")
            if status != 200 or len(body) != BIG_BYTES:
                raise RuntimeError(f"{t}: /big gave {status}, {len(body)} bytes")
        log("all servers up: " + ", ".join(f"{k}={v}" for k, v in P.items()))

    def redis_cli(self, *args, stdin=None):
        r = subprocess.run(["redis-cli", "-p", str(self.ports["redis"])] + list(args),
                           input=stdin, capture_output=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"redis-cli {args[:2]}: {r.stderr.decode()}")
        return r.stdout.decode()

    # ------------------------------------------------------------ runners

    def wrk(self, target, duration, conn_close=False, path="/", hosts=None, host=HOST, origin=None):
        cmd = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{CONNS}", f"-d{duration}s", "--timeout", "5s",
               "-s", self.a.lua, "-H", f"Host: {host}"]
        if origin:
            cmd += ["-H", f"Origin: {origin}"]
        if conn_close:
            cmd += ["-H", "Connection: close"]
        cmd.append(f"http://127.0.0.1:{self.ports[target]}{path}")
        env = dict(os.environ)
        env.pop("BENCH_HOSTS", None)
        if hosts:
            env["BENCH_HOSTS"] = str(hosts)
        cpu_pids = self.cpu_pids(target)
        rss_pids = self.pids_of(target)
        t0 = self.ticks(cpu_pids)
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        self.record_pid(p.pid, "wrk")
        rss = []
        for frac in (0.3, 0.6, 0.9):
            time.sleep(duration * 0.3)
            rss.append(self.rss_kb(rss_pids))
        try:
            out, _ = p.communicate(timeout=duration + 30)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
        t1 = self.ticks(cpu_pids)
        out = out.decode()
        m = re.search(r"^RESULT (.*)$", out, re.M)
        if not m:
            raise RuntimeError(f"wrk gave no result for {target}:\n{out}")
        r = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
        r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
        r["errors"] = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
        r["cpu_us_per_req"] = (t1 - t0) / CLK_TCK * 1e6 / max(1, r["requests"])
        r["rss_load_kb"] = max(rss)
        if r["errors"]:
            log(f"  {target}: {r['errors']} errors (connect {r['connect']} read {r['read']} "
                f"write {r['write']} status {r['status']} timeout {r['timeout']})")
        return r

    def h2load(self, target, duration):
        """h2load against `target` (its HTTP/2 port), H2_CONNS connections of
        H2_STREAMS streams each, `:authority` H2_HOST."""
        port = self.ports["nginx-h2" if target == "nginx" else target]
        cmd = ["taskset", "-c", CLIENT_CPU, "h2load", "-t1", f"-c{H2_CONNS}", f"-m{H2_STREAMS}",
               f"-D{duration}", "-H", f":authority: {H2_HOST}", f"http://127.0.0.1:{port}/"]
        cpu_pids = self.cpu_pids(target)
        t0 = self.ticks(cpu_pids)
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.record_pid(p.pid, "h2load")
        out, _ = p.communicate(timeout=duration + 60)
        t1 = self.ticks(cpu_pids)
        out = out.decode()
        m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
        d = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
        c = re.search(r"status codes: (\d+) 2xx", out)
        if not m or not d or not c:
            raise RuntimeError(f"h2load gave no result for {target}:\n{out}")
        r = {"rps": float(m.group(3)), "requests": int(d.group(2)), "failed": int(d.group(4)),
             "ok": int(c.group(1))}
        r["cpu_us_per_req"] = (t1 - t0) / CLK_TCK * 1e6 / max(1, r["requests"])
        if r["failed"] or r["ok"] != r["requests"]:
            log(f"  {target}: {r['failed']} failed, {r['requests'] - r['ok']} not 2xx over HTTP/2")
        return r

    def loadgen_rate(self, target, rate):
        cpu_pids = self.cpu_pids(target)
        t0 = self.ticks(cpu_pids)
        cmd = ["taskset", "-c", CLIENT_CPU, self.a.loadgen, "rate", "--addr", f"127.0.0.1:{self.ports[target]}",
               "--host", HOST, "--rate", str(rate), "--duration", str(self.rate_dur), "--conns", str(CONNS),
               "--warmup", "1"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.record_pid(p.pid, "loadgen")
        out, _ = p.communicate(timeout=self.rate_dur + 60)
        t1 = self.ticks(cpu_pids)
        out = out.decode()
        if p.returncode != 0:
            raise RuntimeError(f"loadgen rate {target}: {out}")
        r = parse_kv(out.strip().splitlines()[-1])
        r["cpu_us_per_req"] = (t1 - t0) / CLK_TCK * 1e6 / max(1, r["sent"])
        if r["errors"] or r["non2xx"]:
            log(f"  {target}: {r['errors']:.0f} errors, {r['non2xx']:.0f} non-2xx at fixed rate")
        return r

    def add(self, test, target, r):
        self.results.setdefault(test, {}).setdefault(target, []).append(r)

    def med(self, test, target, key):
        rs = self.results.get(test, {}).get(target)
        if not rs:
            return None
        return statistics.median(r[key] for r in rs)

    def spread(self, test, target, key):
        """Half the min-max range over rounds, as a % of the median."""
        rs = self.results.get(test, {}).get(target)
        if not rs or len(rs) < 2:
            return None
        vals = [r[key] for r in rs]
        m = statistics.median(vals)
        return 100 * (max(vals) - min(vals)) / 2 / m if m else None

    # ------------------------------------------------------------ tests

    def warmup(self):
        for t in TARGETS:
            r = self.wrk(t, self.warm)
            if r["errors"]:
                raise RuntimeError(f"warm-up of {t} had errors: {r}")
        time.sleep(1)
        for t in PROXIES:
            self.extra.setdefault("rss_start_kb", {})[t] = self.rss_kb(self.pids_of(t))
        self.extra["redis_rss_start_kb"] = self.rss_kb([self.procs["redis"].pid])

    def test_keepalive(self):
        for i in range(self.rounds):
            log(f"keep-alive throughput, round {i + 1}/{self.rounds}")
            for t in TARGETS:
                self.add("keepalive", t, self.wrk(t, self.dur))

    def test_close(self):
        for i in range(self.rounds):
            log(f"new connection per request, round {i + 1}/{self.rounds}")
            for t in TARGETS:
                self.add("close", t, self.wrk(t, self.dur, conn_close=True))

    def test_rate(self):
        nginx_max = self.med("keepalive", "nginx", "rps")
        rate = int(round(nginx_max / 2, -2))
        self.extra["fixed_rate"] = rate
        for i in range(self.rounds):
            log(f"latency at a fixed {rate} req/s, round {i + 1}/{self.rounds}")
            for t in TARGETS:
                self.add("rate", t, self.loadgen_rate(t, rate))

    def test_idle_rss(self):
        time.sleep(2)
        for t in PROXIES:
            self.extra.setdefault("rss_idle_kb", {})[t] = self.rss_kb(self.pids_of(t))

    def test_idle_conns(self):
        for t in PROXIES:
            log(f"{IDLE_CONNS} idle keep-alive clients on {t}")
            pids = self.pids_of(t)
            before = self.rss_kb(pids)
            cmd = ["taskset", "-c", CLIENT_CPU, self.a.loadgen, "idle", "--addr",
                   f"127.0.0.1:{self.ports[t]}", "--host", HOST, "--conns", str(IDLE_CONNS),
                   "--hold", str(self.idle_hold)]
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            self.record_pid(p.pid, "loadgen")
            ready = p.stdout.readline()
            if not ready.startswith("READY"):
                p.kill()
                raise RuntimeError(f"loadgen idle on {t}: {ready}{p.stdout.read()}")
            time.sleep(min(2, self.idle_hold / 2))
            held = self.rss_kb(pids)
            rest = p.stdout.read()
            p.wait(timeout=120)
            r = parse_kv(ready[len("READY"):])
            r.update(parse_kv(rest.strip().splitlines()[-1][len("DONE"):]) if rest.strip() else {})
            r["rss_before_kb"] = before
            r["rss_held_kb"] = held
            r["kb_per_conn"] = (held - before) / max(1, r["opened"])
            self.extra.setdefault("idle_conns", {})[t] = r
            if r["opened"] < IDLE_CONNS or r.get("alive_after_hold", 0) < r["opened"]:
                log(f"  {t}: opened {r['opened']:.0f}, alive after hold {r.get('alive_after_hold')}")
            time.sleep(1)

    def test_big(self):
        for i in range(self.big_rounds):
            log(f"1 MiB responses, round {i + 1}/{self.big_rounds}")
            for t in TARGETS:
                self.add("big", t, self.wrk(t, self.dur, path="/big"))

    def test_frontends(self):
        log(f"writing {FRONTENDS} frontends to Redis")
        lines = []
        url = f"http://127.0.0.1:{self.ports['direct']}"
        for i in range(1, FRONTENDS + 1):
            key = f"frontend:h{i}.bench.local"
            lines.append(f"*4\r\n$5\r\nRPUSH\r\n${len(key)}\r\n{key}\r\n$1\r\nh\r\n${len(url)}\r\n{url}\r\n")
        out = self.redis_cli("--pipe", stdin="".join(lines).encode())
        if "errors: 0" not in out:
            raise RuntimeError(f"redis-cli --pipe: {out}")
        for t in HIPACHES:
            self.wrk(t, self.warm, hosts=FRONTENDS)
        for i in range(self.rounds):
            log(f"1 vs {FRONTENDS} frontends (random Host per request), round {i + 1}/{self.rounds}")
            for t in HIPACHES:
                self.add("hosts1", t, self.wrk(t, self.dur, hosts=1))
                self.add("hosts100k", t, self.wrk(t, self.dur, hosts=FRONTENDS))
        time.sleep(2)
        for t in HIPACHES:
            self.extra.setdefault("rss_after_100k_kb", {})[t] = self.rss_kb(self.pids_of(t))
        self.extra["redis_rss_after_100k_kb"] = self.rss_kb([self.procs["redis"].pid])

    def route_document(self):
        """20 rules as a platform writes them: header canaries and path
        prefixes for several services, one URL rewrite, one header filter.
        The benchmark's request (`GET /app/page`) is served by the rule with
        the rewrite and the header filter, checked after the higher
        precedence ones."""
        url = f"http://127.0.0.1:{self.ports['direct']}"
        other = f"http://127.0.0.1:{self.ports['backend-b']}"
        rules = []
        for i in range(9):
            rules.append({"matches": [{"path": {"type": "PathPrefix", "value": f"/svc{i}/api"},
                                       "headers": [{"name": "x-canary", "value": "on"}]}],
                          "backends": [{"url": other}]})
            rules.append({"matches": [{"path": {"type": "PathPrefix", "value": f"/svc{i}"}}],
                          "backends": [{"url": other, "weight": 90}, {"url": other, "weight": 10}]})
        rules.append({"matches": [{"path": {"type": "Exact", "value": "/health"}}], "backends": [{"url": other}]})
        rules.append({"matches": [{"path": {"type": "PathPrefix", "value": "/app"}}],
                      "backends": [{"url": url}],
                      "filters": [{"type": "URLRewrite", "path": {"type": "ReplaceFullPath", "value": "/"}},
                                  {"type": "RequestHeaderModifier", "set": [{"name": "x-route", "value": "app"}]}]})
        assert len(rules) == 20
        return {"version": 1, "id": "bench-document", "rules": rules}

    def test_document(self):
        self.redis_cli("SET", f"routes:{DOC_HOST}", json.dumps(self.route_document()))
        self.redis_cli("DEL", f"frontend:{LIST_HOST}")
        self.redis_cli("RPUSH", f"frontend:{LIST_HOST}", "bench", f"http://127.0.0.1:{self.ports['direct']}")
        for t in HIPACHES:
            status, body = self.get(self.ports[t], host=DOC_HOST, path="/app/page")
            if status != 200 or b"backend-a" not in body:
                raise RuntimeError(f"{t}: route document answered {status} {body[:200]!r}")
        for i in range(self.rounds):
            log(f"plain list vs route document of 20 rules, round {i + 1}/{self.rounds}")
            for t in HIPACHES:
                self.add("doc-list", t, self.wrk(t, self.dur, host=LIST_HOST))
                self.add("doc-20", t, self.wrk(t, self.dur, path="/app/page", host=DOC_HOST))

    def test_h2(self):
        url = f"http://127.0.0.1:{self.ports['h2-backend']}"
        doc = {"version": 1, "id": "bench-h2", "rules": [{"protocol": "h2c", "backends": [{"url": url}]}]}
        self.redis_cli("SET", f"routes:{H2_HOST}", json.dumps(doc))
        targets = ["nginx"] + HIPACHES
        for t in targets:
            self.h2load(t, 1)          # warm-up, and a check that it answers
        for i in range(self.rounds):
            log(f"HTTP/2 to an h2c backend (h2load), round {i + 1}/{self.rounds}")
            for t in targets:
                self.add("h2", t, self.h2load(t, self.dur))

    def test_policies(self):
        """The plain list against a one-rule document with an IP
        allow-list, a rate limit (high enough never to refuse: what is
        measured is its cost, a Redis round trip per request) and CORS; the
        requests carry an Origin, so the CORS headers are written."""
        url = f"http://127.0.0.1:{self.ports['direct']}"
        doc = {"version": 1, "id": "bench-policies",
               "policies": {"ipAllowList": ["127.0.0.0/8", "10.0.0.0/8"],
                            "rateLimit": {"requests": 1000000, "period": "1s", "burst": 1000000, "key": "client"},
                            "cors": {"allowOrigins": ["https://*.bench.local"], "allowCredentials": True}},
               "rules": [{"backends": [{"url": url}]}]}
        self.redis_cli("SET", f"routes:{POLICY_HOST}", json.dumps(doc))
        self.redis_cli("DEL", f"frontend:{LIST_HOST}")
        self.redis_cli("RPUSH", f"frontend:{LIST_HOST}", "bench", url)
        for t in HIPACHES:
            status, body = self.get(self.ports[t], host=POLICY_HOST)
            if status != 200 or b"backend-a" not in body:
                raise RuntimeError(f"{t}: policy host answered {status} {body[:200]!r}")
        redis = [self.procs["redis"].pid]
        for i in range(self.rounds):
            log(f"plain list vs allow-list + rate limit + CORS, round {i + 1}/{self.rounds}")
            for t in HIPACHES:
                t0 = self.ticks(redis)
                r = self.wrk(t, self.dur, host=LIST_HOST)
                r["redis_us_per_req"] = (self.ticks(redis) - t0) / CLK_TCK * 1e6 / max(1, r["requests"])
                self.add("pol-list", t, r)
                t0 = self.ticks(redis)
                r = self.wrk(t, self.dur, host=POLICY_HOST, origin="https://app.bench.local")
                r["redis_us_per_req"] = (self.ticks(redis) - t0) / CLK_TCK * 1e6 / max(1, r["requests"])
                self.add("pol-policies", t, r)

    def test_fresh(self):
        for t in HIPACHES:
            log(f"freshness on {t}: {self.fresh_trials} trials")
            cmd = ["taskset", "-c", CLIENT_CPU, self.a.loadgen, "fresh",
                   "--redis", f"127.0.0.1:{self.ports['redis']}", "--proxy", f"127.0.0.1:{self.ports[t]}",
                   "--host", f"fresh-{t}.bench.local",
                   "--url-a", f"http://127.0.0.1:{self.ports['direct']}",
                   "--url-b", f"http://127.0.0.1:{self.ports['backend-b']}",
                   "--marker-a", "backend-a", "--marker-b", "backend-b",
                   "--trials", str(self.fresh_trials), "--timeout-ms", "1000"]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise RuntimeError(f"loadgen fresh {t}: {r.stdout}{r.stderr}")
            self.extra.setdefault("fresh", {})[t] = parse_kv(r.stdout.strip().splitlines()[-1])

    # ------------------------------------------------------------ report

    def report(self, machine, elapsed, other_load):
        L = []
        q = " (--quick: 1 round, short runs: a smoke test, not numbers of record)" if self.quick else ""
        L.append(f"# hipache benchmark, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC{q}")
        L.append("")
        L.append(f"Machine: {machine['nproc']} CPUs, {machine['cpu']}, kernel {machine['kernel']}; "
                 f"{machine['versions']}.")
        L.append(f"Rounds: {self.rounds} (1 MiB: {self.big_rounds}), {self.dur} s per wrk run, "
                 f"{CONNS} connections, wrk -t1; medians over rounds, ±: half the min-max range. "
                 f"Total {elapsed / 60:.1f} min. Other load on the machine during the run: "
                 f"{other_load:.2f} cores on average (0 is quiet; anything above ~0.1 makes the numbers noisy).")
        L.append("")
        ng = lambda test, key="rps": self.med(test, "nginx", key)

        def ratio(v, base):
            return f"{v / base:.2f}x" if v is not None and base else "-"

        def pm(test, t, key="rps"):
            s = self.spread(test, t, key)
            return f" ±{s:.0f}%" if s is not None else ""

        L.append("## Throughput (requests/s, keep-alive and new connection per request, 1 MiB body)")
        L.append("")
        L.append("| target | keep-alive req/s | x nginx | new conn req/s | x nginx | 1 MiB req/s | x nginx | errors |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for t in TARGETS:
            ka, cl, bg = (self.med(x, t, "rps") for x in ("keepalive", "close", "big"))
            errs = sum(r["errors"] for x in ("keepalive", "close", "big") for r in self.results.get(x, {}).get(t, []))
            L.append(f"| {t} | {fmt(ka)}{pm('keepalive', t)} | {ratio(ka, ng('keepalive'))} | "
                     f"{fmt(cl)}{pm('close', t)} | {ratio(cl, ng('close'))} | "
                     f"{fmt(bg)}{pm('big', t)} | {ratio(bg, ng('big'))} | {errs} |")
        L.append("")
        rate = self.extra.get("fixed_rate")
        L.append(f"## Latency at a fixed {fmt(rate)} req/s (about half of nginx's keep-alive maximum), "
                 f"{CONNS} connections, µs")
        L.append("")
        L.append("| target | p50 | p99 | p99.9 | max | added p99 over direct | x nginx's added p99 | achieved req/s | errors | client's own lateness p99 |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        d99 = self.med("rate", "direct", "p99_us")
        n_add = (self.med("rate", "nginx", "p99_us") - d99) if d99 is not None else None
        for t in TARGETS:
            p99 = self.med("rate", t, "p99_us")
            add = p99 - d99 if (p99 is not None and d99 is not None) else None
            addr = "-" if t == "direct" else ratio(add, n_add)
            L.append(f"| {t} | {fmt(self.med('rate', t, 'p50_us'))} | {fmt(p99)}{pm('rate', t, 'p99_us')} | "
                     f"{fmt(self.med('rate', t, 'p999_us'))} | {fmt(self.med('rate', t, 'max_us'))} | "
                     f"{'-' if t == 'direct' else fmt(add)} | {addr} | {fmt(self.med('rate', t, 'achieved_rps'))} | "
                     f"{sum(r['errors'] + r['non2xx'] + r.get('unanswered', 0) for r in self.results.get('rate', {}).get(t, [])):.0f} | "
                     f"{fmt(self.med('rate', t, 'send_lag_p99_us'))} |")
        L.append("")
        L.append("Client's own lateness: how late loadgen itself sent requests (send time minus due time); "
                 "when it is not far below the p99 column, the client was starved of CPU and the row "
                 "measures the machine, not the target.")
        L.append("")
        L.append("## Memory and CPU")
        L.append("")
        L.append("| target | RSS at start MB | RSS under load MB | RSS idle after load MB | "
                 "10k idle clients: KB each | CPU µs/req at max load | x nginx | CPU µs/req at fixed rate | x nginx |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for t in TARGETS:
            if t == "direct":
                ka_cpu = self.med("keepalive", t, "cpu_us_per_req")
                L.append(f"| direct (backend nginx) | - | - | - | - | {fmt(ka_cpu, 2)} | - | "
                         f"{fmt(self.med('rate', t, 'cpu_us_per_req'), 2)} | - |")
                continue
            rs = self.extra.get("rss_start_kb", {}).get(t)
            ri = self.extra.get("rss_idle_kb", {}).get(t)
            rl = self.med("keepalive", t, "rss_load_kb")
            ic = self.extra.get("idle_conns", {}).get(t, {})
            ka_cpu = self.med("keepalive", t, "cpu_us_per_req")
            fr_cpu = self.med("rate", t, "cpu_us_per_req")
            icn = f"{ic['kb_per_conn']:.1f}" if ic else "-"
            if ic and ic.get("alive_after_hold", ic["opened"]) < IDLE_CONNS:
                icn += f" ({ic.get('alive_after_hold', 0):.0f} of {IDLE_CONNS} kept)"
            L.append(f"| {t} | {mb(rs)} | {mb(rl)} | {mb(ri)} | {icn} | {fmt(ka_cpu, 2)} | "
                     f"{ratio(ka_cpu, ng('keepalive', 'cpu_us_per_req'))} | {fmt(fr_cpu, 2)} | "
                     f"{ratio(fr_cpu, ng('rate', 'cpu_us_per_req'))} |")
        L.append("")
        L.append("CPU is utime+stime from /proc/<pid>/stat over the run, divided by the requests completed: "
                 "the proxy's processes, plus redis-server for hipache. RSS sums the target's processes "
                 "(nginx: master and worker).")
        L.append("")
        if "hosts100k" in self.results:
            L.append(f"## {FRONTENDS:,} frontends in Redis, random Host per request (wrk Lua)")
            L.append("")
            L.append("| target | 1 frontend req/s | 100k frontends req/s | ratio | RSS under load (100k) MB | "
                     "RSS idle after MB | redis-server RSS MB |")
            L.append("|---|---:|---:|---:|---:|---:|---:|")
            for t in HIPACHES:
                a1, a2 = self.med("hosts1", t, "rps"), self.med("hosts100k", t, "rps")
                L.append(f"| {t} | {fmt(a1)}{pm('hosts1', t)} | {fmt(a2)}{pm('hosts100k', t)} | {ratio(a2, a1)} | "
                         f"{mb(self.med('hosts100k', t, 'rss_load_kb'))} | "
                         f"{mb(self.extra.get('rss_after_100k_kb', {}).get(t))} | "
                         f"{mb(self.extra.get('redis_rss_after_100k_kb'))} |")
            L.append("")
        if "doc-20" in self.results:
            L.append("## Route document of 20 rules vs a plain list (keep-alive, same run)")
            L.append("")
            L.append("The document's request is served by its 20th rule by precedence (header and path "
                     "matches before it), with a URL rewrite and a header filter; the list is Hipache's "
                     f"`frontend:` entry on a host with as many labels ({LIST_HOST}: as many candidate keys "
                     "read). CPU includes redis-server.")
            L.append("")
            L.append("| target | list req/s | document req/s | ratio | list CPU µs/req | document CPU µs/req |")
            L.append("|---|---:|---:|---:|---:|---:|")
            for t in HIPACHES:
                a1, a2 = self.med("doc-list", t, "rps"), self.med("doc-20", t, "rps")
                L.append(f"| {t} | {fmt(a1)}{pm('doc-list', t)} | {fmt(a2)}{pm('doc-20', t)} | {ratio(a2, a1)} | "
                         f"{fmt(self.med('doc-list', t, 'cpu_us_per_req'), 2)} | "
                         f"{fmt(self.med('doc-20', t, 'cpu_us_per_req'), 2)} |")
            L.append("")
        if "h2" in self.results:
            L.append("## HTTP/2 both ways: h2c clients to an h2c backend (h2load)")
            L.append("")
            L.append(f"h2load -t1, {H2_CONNS} connections x {H2_STREAMS} concurrent streams, `GET /` (a unary-"
                     "sized request: no body, a 10-byte answer) with `:authority` on a route document whose "
                     "rule says `protocol: h2c`; nginx with `grpc_pass` (its one HTTP/2 upstream) to the same "
                     "backend, an nginx `listen ... http2` server. CPU includes redis-server for hipache.")
            L.append("")
            L.append("| target | req/s | vs nginx | CPU µs/req | vs nginx |")
            L.append("|---|---:|---:|---:|---:|")
            for t in ["nginx"] + HIPACHES:
                v, c = self.med("h2", t, "rps"), self.med("h2", t, "cpu_us_per_req")
                L.append(f"| {t} | {fmt(v)}{pm('h2', t)} | {ratio(v, ng('h2'))} | {fmt(c, 2)} | "
                         f"{ratio(c, ng('h2', 'cpu_us_per_req'))} |")
            L.append("")
        if "pol-policies" in self.results:
            L.append("## Access policies vs a plain list (keep-alive, same run)")
            L.append("")
            L.append("One rule with an IP allow-list, a fleet-wide rate limit keyed by client (never reached: "
                     "its cost is measured) and CORS, requests with an `Origin`; against the plain list on "
                     f"{LIST_HOST}. redis-server CPU per request is counted apart: the rate limit's share of it "
                     "is the difference.")
            L.append("")
            L.append("| target | list req/s | policies req/s | ratio | list CPU µs/req | policies CPU µs/req | "
                     "redis-server µs/req, list | redis-server µs/req, policies |")
            L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
            for t in HIPACHES:
                a1, a2 = self.med("pol-list", t, "rps"), self.med("pol-policies", t, "rps")
                L.append(f"| {t} | {fmt(a1)}{pm('pol-list', t)} | {fmt(a2)}{pm('pol-policies', t)} | {ratio(a2, a1)} | "
                         f"{fmt(self.med('pol-list', t, 'cpu_us_per_req'), 2)} | "
                         f"{fmt(self.med('pol-policies', t, 'cpu_us_per_req'), 2)} | "
                         f"{fmt(self.med('pol-list', t, 'redis_us_per_req'), 2)} | "
                         f"{fmt(self.med('pol-policies', t, 'redis_us_per_req'), 2)} |")
            L.append("")
        if "fresh" in self.extra:
            L.append("## Freshness: Redis write (LSET to a new backend) to the first answer from it, µs")
            L.append("")
            L.append("| mode | trials | p50 | p90 | p99 | max | first request after the write already fresh | "
                     "most requests needed | timeouts (1 s) | write ack p50 | one request p50 |")
            L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for t in HIPACHES:
                f = self.extra["fresh"].get(t)
                if not f:
                    continue
                L.append(f"| {t} | {f['trials']:.0f} | {fmt(f['p50_us'])} | {fmt(f['p90_us'])} | {fmt(f['p99_us'])} | "
                         f"{fmt(f['max_us'])} | {f['first_poll_fresh_pct']:.1f}% | {f['max_polls']:.0f} | "
                         f"{f['timeouts']:.0f} | {fmt(f['write_ack_p50_us'])} | {fmt(f['request_rtt_p50_us'])} |")
            L.append("")
        L.append("## Targets (issue 6)")
        L.append("")
        L.append("| target | measured | met |")
        L.append("|---|---|---|")
        for name, measured, ok in self.targets():
            L.append(f"| {name} | {measured} | {'yes' if ok else ('no' if ok is not None else 'n/a')} |")
        L.append("")
        return "\n".join(L)

    def targets(self):
        out = []
        nka = self.med("keepalive", "nginx", "rps")
        for t, want in (("hipache-tracking", 1.0), ("hipache-strict", 0.7)):
            v = self.med("keepalive", t, "rps")
            out.append((f"{t} keep-alive req/s >= {want}x nginx",
                        f"{v / nka:.2f}x" if v and nka else "-", (v / nka >= want) if v and nka else None))
        d99 = self.med("rate", "direct", "p99_us")
        n99 = self.med("rate", "nginx", "p99_us")
        for t in HIPACHES:
            p99 = self.med("rate", t, "p99_us")
            if None in (d99, n99, p99):
                continue
            out.append((f"{t} added p99 over direct <= nginx's",
                        f"{p99 - d99:+.0f} µs vs nginx {n99 - d99:+.0f} µs", p99 - d99 <= n99 - d99))
        for t in HIPACHES:
            a1, a2 = self.med("hosts1", t, "rps"), self.med("hosts100k", t, "rps")
            if a1 and a2:
                out.append((f"{t} 100k frontends within 10% of 1 frontend", f"{a2 / a1:.2f}x", a2 / a1 >= 0.9))
            rl = self.med("hosts100k", t, "rss_load_kb")
            if rl:
                out.append((f"{t} RSS with 100k frontends < 150 MB", f"{rl / 1024:.1f} MB", rl < 150 * 1024))
        for t in HIPACHES:
            a1, a2 = self.med("doc-list", t, "rps"), self.med("doc-20", t, "rps")
            if a1 and a2:
                out.append((f"{t} route document of 20 rules within 10% of a plain list", f"{a2 / a1:.2f}x",
                            a2 / a1 >= 0.9))
        for t in HIPACHES:
            a1, a2 = self.med("pol-list", t, "rps"), self.med("pol-policies", t, "rps")
            if a1 and a2:
                out.append((f"{t} allow-list + rate limit + CORS within 15% of a plain list", f"{a2 / a1:.2f}x",
                            a2 / a1 >= 0.85))
        f = self.extra.get("fresh", {})
        if "hipache-tracking" in f:
            v = f["hipache-tracking"]
            out.append(("tracking: freshness p99 < 5 ms", f"p99 {v['p99_us'] / 1000:.2f} ms", v["p99_us"] < 5000))
        if "hipache-strict" in f:
            v = f["hipache-strict"]
            out.append(("strict: the next request after a write is fresh",
                        f"{v['first_poll_fresh_pct']:.1f}% of trials", v["first_poll_fresh_pct"] >= 100.0))
        for t in HIPACHES:
            ri = self.extra.get("rss_idle_kb", {}).get(t)
            if ri:
                out.append((f"{t} idle RSS < 30 MB", f"{ri / 1024:.1f} MB", ri < 30 * 1024))
            ic = self.extra.get("idle_conns", {}).get(t)
            if ic:
                out.append((f"{t} RSS per idle keep-alive client < 16 KB", f"{ic['kb_per_conn']:.1f} KB",
                            ic["kb_per_conn"] < 16 and ic.get("alive_after_hold", 0) >= IDLE_CONNS))
        n = self.med("keepalive", "nginx", "cpu_us_per_req")
        for t in HIPACHES:
            v = self.med("keepalive", t, "cpu_us_per_req")
            if v and n:
                out.append((f"{t} CPU µs/req (proxy + redis) vs nginx (reported, no target)",
                            f"{v:.2f} vs {n:.2f} µs = {v / n:.2f}x", None))
        return out


def parse_kv(line):
    out = {}
    for kv in line.split():
        if "=" in kv:
            k, v = kv.split("=", 1)
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def fmt(v, digits=0):
    if v is None:
        return "-"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def mb(kb):
    return "-" if kb is None else f"{kb / 1024:.1f}"


def cmd_version(argv, pattern=r"(\d+\.\d+[\w.\-]*)"):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        m = re.search(pattern, r.stdout + r.stderr)
        return m.group(1) if m else "?"
    except OSError:
        return "?"


def machine_info():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = ", ".join([
        "nginx " + cmd_version(["nginx", "-v"], r"nginx/([\d.]+)"),
        "HAProxy " + cmd_version(["haproxy", "-v"], r"version ([\w.\-+]+)"),
        "redis " + cmd_version(["redis-server", "--version"], r"v=([\d.]+)"),
        "wrk " + cmd_version(["wrk", "-v"], r"wrk ([\w/.\-+]+)"),
        cmd_version(["rustc", "--version"], r"(rustc [\d.]+)"),
    ])
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "versions": versions}


def cpu_busy_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2]             # user + nice + system (not irq, softirq, steal)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--pids", required=True)
    ap.add_argument("--hipache", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--lua", required=True)
    ap.add_argument("--out", required=True, help="Markdown report file")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--duration", type=int)
    ap.add_argument("--only", default="", help="comma-separated tests (debugging): "
                    "keepalive,close,rate,idle,big,frontends,document,policies,h2,fresh")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    b = Bench(a)
    started = time.time()
    busy0 = cpu_busy_ticks()
    own0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    only = set(filter(None, a.only.split(",")))
    want = lambda t: not only or t in only
    try:
        b.start()
        b.warmup()
        if want("keepalive") or want("rate"):
            b.test_keepalive()
        if want("close"):
            b.test_close()
        if want("rate"):
            b.test_rate()
        b.test_idle_rss()
        if want("idle"):
            b.test_idle_conns()
        if want("big"):
            b.test_big()
        if want("frontends"):
            b.test_frontends()
        if want("document"):
            b.test_document()
        if want("policies"):
            b.test_policies()
        if want("h2"):
            b.test_h2()
        if want("fresh"):
            b.test_fresh()
    finally:
        b.stop_all()
    elapsed = time.time() - started
    busy = (cpu_busy_ticks() - busy0) / CLK_TCK
    own1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    ours = (own1.ru_utime + own1.ru_stime - own0.ru_utime - own0.ru_stime
            + self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime)
    other_load = max(0.0, (busy - ours) / elapsed)
    text = b.report(machine_info(), elapsed, other_load)
    with open(a.out, "w") as f:
        f.write(text + "\n")
    with open(os.path.splitext(a.out)[0] + ".json", "w") as f:
        json.dump({"results": b.results, "extra": b.extra, "ports": b.ports}, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
