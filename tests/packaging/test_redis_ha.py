"""The chart's Redis high availability (`redis.ha`), run for real.

Three "pods" are replayed locally from the render, each on a loopback
address of its own (127.a.b.1, .2, .3) standing for its DNS name, so that
the fixed ports of the manifests (6379, 26379) stay as rendered: for each,
its volumes are written under a temporary root as the kubelet would, the
init container's script runs (it asks the other Sentinels who the master
is and writes redis.conf and sentinel.conf), then the Redis container's
script and the Sentinel's command. The pods start in order, as the
StatefulSet starts them. Then: pod 0 is the master and the others
replicate from it, every Sentinel names it and knows the whole set, the
readiness probes pass; pod 0 is killed and started again at once, and its
init script must wait for the Sentinels' failover and bring it back as a
replica of the new master, never as a second master; then the new
master's Redis container alone crashes and restarts at once, and its own
start script must do the same. Redis's ACL LOG must
stay empty on every server: nothing the replicas or the Sentinels sent was
refused.

Everything runs under `timeout` in its own process group and is killed at
the end of the test (the `processes` fixture).
"""

from __future__ import annotations

import base64
import random
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from helpers import log_tails, one, render, run, spawn, stop, until
from test_redis_acl import Resp, ok

# A quick failure detection, so that the failover takes seconds.
SETS = ("redis.ha.enabled=true", "redis.ha.downAfterMilliseconds=1000", "redis.ha.failoverTimeout=5000")
MASTER_NAME = "hipache"
SENTINEL_PORT = 26379
REDIS_PORT = 6379


def secret_value(objs: list[dict], name: str, key: str) -> bytes:
    return base64.b64decode(one(objs, "Secret", name)["data"][key])


def connect(addr: str, port: int) -> Resp:
    """A RESP client of `addr:port` (Resp itself dials 127.0.0.1)."""
    c = Resp.__new__(Resp)
    c.sock = socket.create_connection((addr, port), timeout=5)
    c.buf = b""
    c.pushes = []
    return c


def loopback_addresses(n: int) -> list[str]:
    """`n` loopback addresses on which both ports are free."""
    for _ in range(20):
        base = f"127.{random.randint(16, 250)}.{random.randint(0, 250)}"
        addrs = [f"{base}.{i + 1}" for i in range(n)]
        try:
            socks = []
            for a in addrs:
                for port in (REDIS_PORT, SENTINEL_PORT):
                    s = socket.socket()
                    socks.append(s)
                    s.bind((a, port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return addrs
    raise AssertionError("no free loopback addresses")


@dataclass
class Pod:
    """One Redis pod of the StatefulSet, replayed."""
    index: int
    addr: str
    root: Path
    objs: list[dict]
    # Every pod's DNS name, and the address standing for it.
    hosts: list[str]
    addrs: list[str]
    procs: list[subprocess.Popen] = field(default_factory=list)

    def __post_init__(self):
        sts = one(self.objs, "StatefulSet")
        spec = sts["spec"]["template"]["spec"]
        self.name = f"{sts['metadata']['name']}-{self.index}"
        self.volumes = {v["name"]: v for v in spec["volumes"]}
        self.init = one_container(spec["initContainers"], "config")
        self.redis = one_container(spec["containers"], "redis")
        self.sentinel = one_container(spec["containers"], "sentinel")
        self.mounts: dict[str, Path] = {}
        for c in (self.init, self.redis, self.sentinel):
            for m in c["volumeMounts"]:
                self.mounts[m["mountPath"]] = self.root / m["mountPath"].lstrip("/")
        self.pattern = re.compile("|".join(re.escape(p) for p in sorted(self.mounts, key=len, reverse=True))
                                  + r"(?=/|\b)")
        self.logs = [self.root / n for n in ("init.log", "redis.log", "sentinel.log")]

    def local(self, text: str) -> str:
        """`text` with the mount paths under the pod's root and every pod's
        DNS name replaced by its loopback address."""
        text = self.pattern.sub(lambda m: str(self.mounts[m.group(0)]), text)
        text = text.replace('"$POD_NAME.' + self.hosts[0].split(".", 1)[1] + '"', self.addr)
        return re.sub("|".join(re.escape(h) for h in self.hosts),
                      lambda m: self.addrs[self.hosts.index(m.group(0))], text)

    def write_volumes(self) -> None:
        """The volumes as the kubelet makes them: the ConfigMap (its
        `bind` made this pod's address, its paths local), the password files, emptyDirs
        (fresh at each pod start) and the PVC (kept)."""
        for path, local in self.mounts.items():
            name = next(m["name"] for c in (self.init, self.redis, self.sentinel)
                        for m in c["volumeMounts"] if m["mountPath"] == path)
            vol = self.volumes.get(name)
            if vol is None:  # the PVC
                local.mkdir(parents=True, exist_ok=True)
                continue
            if "emptyDir" in vol and local.exists():
                for f in local.iterdir():
                    f.unlink()
            local.mkdir(parents=True, exist_ok=True)
            if "configMap" in vol:
                for k, v in one(self.objs, "ConfigMap", vol["configMap"]["name"])["data"].items():
                    v = re.sub(r"^bind .*$", f"bind {self.addr}", v, flags=re.M)
                    (local / k).write_text(self.local(v))
            elif "projected" in vol:
                for src in vol["projected"]["sources"]:
                    s = src["secret"]
                    for item in s["items"]:
                        (local / item["path"]).write_bytes(secret_value(self.objs, s["name"], item["key"]))

    def env(self, c: dict) -> dict[str, str]:
        env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
        for e in c.get("env", []):
            src = e["valueFrom"]
            if "fieldRef" in src:
                assert src["fieldRef"]["fieldPath"] == "metadata.name"
                env[e["name"]] = self.name
            else:
                ref = src["secretKeyRef"]
                env[e["name"]] = secret_value(self.objs, ref["name"], ref["key"]).decode()
        return env

    def start(self, procs: list[subprocess.Popen], init_timeout: float = 30) -> str:
        """Starts the pod: the init container to its end (its output is
        returned), then Redis and Sentinel."""
        self.write_volumes()
        assert self.init["command"][:2] == ["sh", "-c"]
        res = run(["sh", "-c", self.local(self.init["command"][2])], env=self.env(self.init), cwd=self.root,
                  timeout=init_timeout)
        (self.root / "init.log").write_text(res.stdout + res.stderr)
        assert res.returncode == 0, f"{self.name}: init failed\n{res.stdout}{res.stderr}"
        self.procs = [
            spawn(["sh", "-c", self.local(self.redis["command"][2])], self.logs[1], env=self.env(self.redis),
                  cwd=self.root),
            spawn([self.local(a) for a in self.sentinel["command"]], self.logs[2], env=self.env(self.sentinel),
                  cwd=self.root),
        ]
        procs.extend(self.procs)
        return res.stdout

    def kill(self) -> None:
        for p in self.procs:
            stop(p)

    def restart_redis(self, procs: list[subprocess.Popen]) -> Path:
        """Restarts the Redis container alone (a crash, not a new pod: the
        emptyDirs stay); returns its new log."""
        stop(self.procs[0])
        log = self.root / "redis-restarted.log"
        self.logs.append(log)
        self.procs[0] = spawn(["sh", "-c", self.local(self.redis["command"][2])], log, env=self.env(self.redis),
                              cwd=self.root)
        procs.append(self.procs[0])
        return log

    def probe(self, c: dict) -> bool:
        cmd = [p.replace("-h 127.0.0.1", f"-h {self.addr}") for p in c["readinessProbe"]["exec"]["command"]]
        return run(cmd, env=self.env(c), timeout=10).returncode == 0

    def ready(self) -> bool:
        return self.probe(self.redis) and self.probe(self.sentinel)

    def admin(self) -> Resp:
        c = connect(self.addr, REDIS_PORT)
        reply = c.call("AUTH", "admin", secret_value(self.objs, "hipache-redis", "admin-password"))
        assert ok(reply), reply
        return c

    def sentinel_client(self) -> Resp:
        c = connect(self.addr, SENTINEL_PORT)
        reply = c.call("AUTH", secret_value(self.objs, "hipache-redis", "sentinel-password"))
        assert ok(reply), reply
        return c

    def role(self) -> list:
        with self.admin() as a:
            return a.call("ROLE")

    def route(self, host: str) -> list:
        with self.admin() as a:
            return a.call("LRANGE", f"frontend:{host}", 0, -1)

    def master_by_sentinel(self) -> list:
        with self.sentinel_client() as s:
            return s.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)


def one_container(containers: list[dict], name: str) -> dict:
    return next(c for c in containers if c["name"] == name)


def test_sentinels_elect_follow_and_fail_over(tmp_path, processes):
    objs = render(None, SETS)
    sts = one(objs, "StatefulSet")
    n = sts["spec"]["replicas"]
    assert n == 3
    url = next(e["value"] for e in one_container(
        one(objs, "Deployment", "hipache")["spec"]["template"]["spec"]["containers"], "hipache")["env"]
        if e["name"] == "HIPACHE_DRIVER")
    hosts = [h.rsplit(":", 1)[0] for h in re.match(r"^redis\+sentinel://[^@]*@([^/]+)/", url).group(1).split(",")]
    assert len(hosts) == n
    addrs = loopback_addresses(n)
    pods = [Pod(i, addrs[i], tmp_path / f"pod-{i}", objs, hosts, addrs) for i in range(n)]
    logs = [log for p in pods for log in p.logs]

    # First start, in order: pod 0 finds no Sentinel and is the master.
    for pod in pods:
        out = pod.start(processes)
        expected = "starting as the master" if pod.index == 0 else f"starting as a replica of {addrs[0]}"
        assert expected in out, out
        until(f"{pod.name} ready", pod.ready, deadline=30, logs=logs, procs=pod.procs)

    assert pods[0].role()[0] == "master"
    for pod in pods[1:]:
        role = pod.role()
        assert role[:3] == ["slave", addrs[0], REDIS_PORT] and role[3] == "connected", role
    with pods[0].admin() as a:
        assert ok(a.call("RPUSH", "frontend:ha.example", "ha", "http://10.0.0.1:80"))
    for pod in pods:
        until(f"{pod.name}: the Sentinel names the master", lambda p=pod: p.master_by_sentinel() == [addrs[0], str(REDIS_PORT)],
              logs=logs)

        def knows_all(p=pod) -> bool:
            with p.sentinel_client() as s:
                return (len(s.call("SENTINEL", "REPLICAS", MASTER_NAME)) == n - 1
                        and len(s.call("SENTINEL", "SENTINELS", MASTER_NAME)) == n - 1)

        until(f"{pod.name}: the Sentinel knows every replica and Sentinel", knows_all, deadline=20, logs=logs)
        until(f"{pod.name}: the route replicated",
              lambda p=pod: p.route("ha.example") == ["ha", "http://10.0.0.1:80"], logs=logs)

    # The master goes away and its pod starts again at once: the Sentinels
    # still name it, so its init container waits for their failover.
    pods[0].kill()
    started = time.monotonic()
    out = pods[0].start(processes, init_timeout=60)
    assert "waiting for a failover" in out, out
    new = re.search(r"starting as a replica of (\S+)", out)
    assert new and new.group(1) in addrs[1:], out
    assert time.monotonic() - started < 40
    master = pods[addrs.index(new.group(1))]
    until("pod 0 ready as a replica", pods[0].ready, deadline=30, logs=logs, procs=pods[0].procs)
    role = pods[0].role()
    assert role[:3] == ["slave", master.addr, REDIS_PORT] and role[3] == "connected", role
    assert master.role()[0] == "master"
    for pod in pods:
        until(f"{pod.name}: the Sentinel names the new master",
              lambda p=pod: p.master_by_sentinel() == [master.addr, str(REDIS_PORT)], deadline=20, logs=logs)
        if pod is not master:
            until(f"{pod.name} follows the new master",
                  lambda p=pod: p.role()[:2] == ["slave", master.addr] and p.role()[3] == "connected",
                  deadline=20, logs=logs)
    with master.admin() as a:
        assert a.call("LRANGE", "frontend:ha.example", 0, -1) == ["ha", "http://10.0.0.1:80"]
        assert ok(a.call("RPUSH", "frontend:ha.example", "http://10.0.0.2:80"))
    until("the write after the failover replicated to pod 0",
          lambda: len(pods[0].route("ha.example")) == 3, logs=logs)

    # The new master's Redis container crashes and restarts at once, its
    # Sentinel running on: it chooses again and waits for a failover too.
    log = master.restart_redis(processes)
    logs.append(log)
    until("the restarted master ready as a replica", master.ready, deadline=40, logs=logs, procs=master.procs)
    out = log.read_text()
    assert "waiting for a failover" in out, out
    newer = pods[addrs.index(re.search(r"starting as a replica of (\S+)", out).group(1))]
    assert newer is not master and newer.role()[0] == "master"
    for pod in pods:
        until(f"{pod.name}: the Sentinel names the newer master",
              lambda p=pod: p.master_by_sentinel() == [newer.addr, str(REDIS_PORT)], deadline=20, logs=logs)
        if pod is not newer:
            until(f"{pod.name} follows the newer master",
                  lambda p=pod: p.role()[:2] == ["slave", newer.addr] and p.role()[3] == "connected",
                  deadline=20, logs=logs)
    until("every write on every pod", lambda: all(len(p.route("ha.example")) == 3 for p in pods), logs=logs)

    # Nothing the replicas or the Sentinels sent was refused.
    for pod in pods:
        with pod.admin() as a:
            assert a.call("ACL", "LOG") == [], f"{pod.name}: {a.call('ACL', 'LOG')}\n{log_tails(logs)}"
