"""Redis ACL users of the chart, against a real redis-server.

The chart is rendered (defaults, a key prefix that needs glob escaping, and
tenant users with the legacy shared password); the Redis container is
replayed locally: its ConfigMap and password files are written under a
temporary root, its own start script runs (it writes the ACL file Redis
loads, then execs redis-server, here on a free 127.0.0.1 port), and each
user is checked to do its job and nothing else. Then the real binaries run
as their users with the chart's configuration: the proxy serves a route,
marks a dead backend, follows client tracking and loads certificates; the
syncer, fed by a static fake Kubernetes API, writes an Ingress's frontend
and certificate, removes a stale one and health-checks; Redis's ACL LOG
must stay empty (nothing either binary sent was refused).

Everything listens on 127.0.0.1 and runs under `timeout` in its own process
group; each group is killed at the end of the test (the `processes` and
`redis_for` fixtures).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from helpers import MATRIX, ROOT, bin_dir, find, free_port, log_tails, one, render, run, spawn, stop, until
from test_binaries import materialize, proxy_parts, relocate

# A prefix with glob characters: the ACL patterns must make it literal.
GLOB_PREFIX = "edge[1]*"
USERS_CASE = MATRIX["redis-users"]


# --- a small RESP2/RESP3 client -----------------------------------------------

class RespError(str):
    """An error reply (`-ERR …`, `-NOPERM …`)."""


@dataclass
class Push:
    data: list


class Resp:
    def __init__(self, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.pushes: list[Push] = []

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, *args) -> None:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read_any(self):
        line = self._line()
        t, rest = line[:1], line[1:].decode()
        if t == b"+":
            return rest
        if t == b"-":
            return RespError(rest)
        if t in (b":", b"("):
            return int(rest)
        if t == b",":
            return float(rest)
        if t == b"#":
            return rest == "t"
        if t == b"_":
            return None
        if t in (b"$", b"="):
            if rest == "-1":
                return None
            data = self._exact(int(rest)).decode(errors="replace")
            return data[4:] if t == b"=" else data
        if t in (b"*", b"~", b">"):
            if rest == "-1":
                return None
            items = [self.read_any() for _ in range(int(rest))]
            return Push(items) if t == b">" else items
        if t == b"%":
            return {self.read_any(): self.read_any() for _ in range(int(rest))}
        if t == b"|":
            for _ in range(2 * int(rest)):
                self.read_any()
            return self.read_any()
        raise AssertionError(f"unexpected RESP line {line!r}")

    def read(self):
        """The next reply; RESP3 pushes met on the way are kept aside."""
        while True:
            v = self.read_any()
            if isinstance(v, Push):
                self.pushes.append(v)
                continue
            return v

    def call(self, *args):
        self.send(*args)
        return self.read()


def refused(reply) -> bool:
    return isinstance(reply, RespError) and reply.startswith("NOPERM")


def ok(reply) -> bool:
    return not isinstance(reply, RespError)


# --- the chart's Redis, replayed ----------------------------------------------

class Secrets:
    """Secret contents: the chart's generated Secrets as rendered, and for
    the existing Secrets named by values a stand-in password per key."""

    def __init__(self, objs: list[dict]):
        self.rendered = {o["metadata"]["name"]: o for o in find(objs, "Secret")}

    def get(self, name: str, key: str) -> bytes:
        if name in self.rendered:
            data = self.rendered[name].get("data") or {}
            assert key in data, f"Secret {name} has no key {key}"
            return base64.b64decode(data[key])
        return f"{name}:{key}:St4nd-in pass/word".encode()


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen
    log: Path
    acl_file: Path
    admin_password: bytes
    # ACL user -> the password file Redis was started with.
    passwords: dict[str, bytes] = field(default_factory=dict)

    def client(self, user: str | None = None, password: bytes | None = None, resp3: bool = False) -> Resp:
        c = Resp(self.port)
        if user is not None:
            pw = self.passwords[user] if password is None else password
            reply = c.call("HELLO", 3, "AUTH", user, pw) if resp3 else c.call("AUTH", user, pw)
            assert ok(reply), f"{user} cannot log in: {reply}"
        return c

    def admin(self) -> Resp:
        return self.client("admin", self.admin_password)

    def acl_log(self) -> list:
        with self.admin() as a:
            return a.call("ACL", "LOG")

    def stop(self) -> None:
        stop(self.proc)


def redis_container(objs: list[dict]) -> tuple[dict, dict]:
    sts = one(objs, "StatefulSet")
    c = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "redis")
    return sts, c


def start_redis(objs: list[dict], root: Path, secrets: Secrets) -> RedisServer:
    """Writes the Redis container's volumes under `root` as the kubelet
    would, then runs its start script: the ACL file it writes is what Redis
    loads."""
    sts, c = redis_container(objs)
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    mounts: dict[str, Path] = {}
    passwords: dict[str, bytes] = {}
    for m in c["volumeMounts"]:
        local = root / m["mountPath"].lstrip("/")
        local.mkdir(parents=True, exist_ok=True)
        mounts[m["mountPath"]] = local
        vol = volumes.get(m["name"])
        if vol is None:
            continue  # the PVC of volumeClaimTemplates
        if "configMap" in vol:
            for k, v in one(objs, "ConfigMap", vol["configMap"]["name"])["data"].items():
                (local / k).write_text(v)
        elif "projected" in vol:
            for src in vol["projected"]["sources"]:
                s = src["secret"]
                for item in s["items"]:
                    data = secrets.get(s["name"], item["key"])
                    (local / item["path"]).write_bytes(data)
                    passwords[item["path"]] = data
        else:
            assert "emptyDir" in vol, f"unhandled volume {vol}"
    port = free_port()
    pattern = re.compile("|".join(re.escape(p) for p in sorted(mounts, key=len, reverse=True)) + r"(?=/|\b)")
    reloc = lambda text: pattern.sub(lambda mt: str(mounts[mt.group(0)]), text)  # noqa: E731
    conf_dir = mounts["/etc/redis"]
    conf = (conf_dir / "redis.conf").read_text()
    assert re.search(r"^bind ", conf, re.M) and re.search(r"^port 6379$", conf, re.M)
    conf = re.sub(r"^bind .*$", "bind 127.0.0.1", conf, flags=re.M)
    conf = re.sub(r"^port .*$", f"port {port}", conf, flags=re.M)
    (conf_dir / "redis.conf").write_text(reloc(conf))
    script = c["command"][2]
    assert c["command"][:2] == ["sh", "-c"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    admin = None
    for e in c.get("env", []):
        ref = e["valueFrom"]["secretKeyRef"]
        env[e["name"]] = secrets.get(ref["name"], ref["key"]).decode()
        if e["name"] == "REDISCLI_AUTH":
            admin = secrets.get(ref["name"], ref["key"])
    assert admin is not None, "REDISCLI_AUTH is not set in the Redis container"
    log = root / "redis.log"
    proc = spawn(["sh", "-c", reloc(script)], log, env=env, cwd=root)
    server = RedisServer(port, proc, log, mounts["/run/redis"] / "users.acl", admin, passwords)

    def pong() -> bool:
        with server.admin() as a:
            return a.call("PING") == "PONG"

    until("redis", pong, logs=[log], procs=[proc])
    # The container's readiness probe passes, on this port.
    probe = c["readinessProbe"]["exec"]["command"]
    probe = [p.replace("-h 127.0.0.1", f"-h 127.0.0.1 -p {port}") for p in probe]
    res = run(probe, env=env, timeout=10)
    assert res.returncode == 0, f"readiness probe failed: {res.stdout}{res.stderr}"
    return server


@pytest.fixture
def redis_for(tmp_path):
    """Starts the chart's Redis for a render; stopped at the end."""
    started: list[RedisServer] = []

    def start(objs: list[dict], name: str = "redis") -> RedisServer:
        s = start_redis(objs, tmp_path / name, Secrets(objs))
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def glob_escape(s: str) -> str:
    return re.sub(r"([][*?\\])", r"\\\1", s)


def keys_of(prefix: str) -> dict[str, str]:
    return {"frontend": f"{prefix}frontend:", "dead": f"{prefix}dead:", "tls": f"{prefix}tls:",
            "routes": f"{prefix}routes:", "ratelimit": f"{prefix}ratelimit:"}


# The proxy's rate-limit script (run with EVALSHA; SCRIPT LOAD on NOSCRIPT).
RATE_SCRIPT = (ROOT / "proxy/src/ratelimit/gcra.lua").read_text()


RENDERS = {
    "defaults": (None, ()),
    "prefix": (None, (f"redis.keyPrefix={GLOB_PREFIX}",)),
    # URL syntax in the prefix: escaped in the URL, literal in the rules.
    "url-prefix": (None, ("redis.keyPrefix=t/1#a%b:",)),
    "users": (USERS_CASE, ()),
}


def prefix_of(objs: list[dict]) -> str:
    url = next(e["value"] for e in proxy_parts(objs)[1]["env"] if e["name"] == "HIPACHE_DRIVER")
    return urllib.request.unquote(url.split("#", 1)[1]) if "#" in url else ""


# --- what each user may do ------------------------------------------------------

@pytest.mark.parametrize("case", list(RENDERS))
def test_acl_file_is_loaded_and_default_is_off(case, redis_for):
    objs = render(*RENDERS[case])
    r = redis_for(objs)
    text = r.acl_file.read_text()
    assert r.acl_file.stat().st_mode & 0o077 == 0, "the ACL file is readable by others"
    for user, pw in r.passwords.items():
        assert pw.decode() not in text, f"{user}'s password is in clear in the ACL file"
    with r.admin() as a:
        users = a.call("ACL", "USERS")
    expected = {"default", "admin", "proxy", "syncer"}
    if case == "users":
        expected |= {"acme", "globex"}
    assert set(users) == expected
    with Resp(r.port) as c:
        assert c.call("PING").startswith("NOAUTH")
        assert c.call("GET", "hchecker_ping").startswith("NOAUTH")
        # A client that only knows a password logs in as `default`.
        reply = c.call("AUTH", r.passwords.get("default", b"whatever"))
        if case == "users":  # redis.auth.legacyPassword
            assert reply == "OK"
        else:
            assert reply.startswith("WRONGPASS")
    with Resp(r.port) as c:
        assert c.call("AUTH", "proxy", "not the password").startswith("WRONGPASS")


@pytest.mark.parametrize("case", list(RENDERS))
def test_proxy_user_reads_routes_and_writes_dead_marks_only(case, redis_for):
    objs = render(*RENDERS[case])
    prefix = prefix_of(objs)
    k = keys_of(prefix)
    r = redis_for(objs)
    with r.admin() as a:
        a.call("RPUSH", k["frontend"] + "www.example.com", "id", "http://127.0.0.1:1")
        a.call("HSET", k["tls"] + "www.example.com", "cert", "C", "key", "K", "owner", "k8s:ns/x")
        a.call("SADD", k["dead"] + "www.example.com", 0)
        a.call("SET", "hchecker_ping", 1)
        a.call("RPUSH", "other" + k["frontend"] + "x", "id")
    with r.client("proxy") as p:
        assert p.call("PING") == "PONG"
        assert p.call("LRANGE", k["frontend"] + "www.example.com", 0, -1) == ["id", "http://127.0.0.1:1"]
        assert p.call("SMEMBERS", k["dead"] + "www.example.com") == ["0"]
        assert p.call("HMGET", k["tls"] + "www.example.com", "cert", "key") == ["C", "K"]
        assert p.call("GET", "hchecker_ping") == "1"
        cursor, found = p.call("SCAN", 0, "MATCH", glob_escape(k["tls"]) + "*", "COUNT", 1000)
        assert found == [k["tls"] + "www.example.com"]
        # A dead mark, as the proxy writes it.
        assert p.call("MULTI") == "OK"
        for cmd in (("SADD", k["dead"] + "a.example.com", 1), ("EXPIRE", k["dead"] + "a.example.com", 30),
                    ("PUBLISH", "dead", "a.example.com;http://x;1;2")):
            assert p.call(*cmd) == "QUEUED"
        assert p.call("EXEC") == [1, 1, 0]
        assert p.call("PUBLISH", "dead", "a.example.com;http://x;1;2") == 0
        # A rate-limit decision, as the proxy asks for it: the script runs
        # on a `ratelimit:` key and may call TIME, GET and SET there.
        bucket = k["ratelimit"] + "www.example.com:host:all"
        sha = p.call("SCRIPT", "LOAD", RATE_SCRIPT)
        assert p.call("EVALSHA", sha, 1, bucket, 1000000, 0) == [1, 0]
        allowed, wait = p.call("EVALSHA", sha, 1, bucket, 1000000, 0)
        assert allowed == 0 and 0 < wait <= 1000000
        with r.admin() as a:
            assert 0 < a.call("PTTL", bucket) <= 2000
        # Not on any other key, and nothing but the script's commands there.
        assert refused(p.call("EVALSHA", sha, 1, k["dead"] + "www.example.com", 1000000, 0))
        assert refused(p.call("EVALSHA", sha, 1, k["frontend"] + "www.example.com", 1000000, 0))
        for cmd in (("SET", k["dead"] + "x", 1), ("SET", k["frontend"] + "x", 1), ("SET", "hchecker_ping", 3),
                    ("DEL", bucket), ("KEYS", k["ratelimit"] + "*"), ("SCRIPT", "EXISTS", sha)):
            assert refused(p.call(*cmd)), f"proxy may run {cmd}"
        if prefix:
            assert refused(p.call("EVALSHA", sha, 1, "ratelimit:www.example.com:host:all", 1000000, 0))
        if prefix:
            assert refused(p.call("LRANGE", "frontend:www.example.com", 0, -1))
        if prefix == GLOB_PREFIX:
            # The prefix is literal: a key its unescaped glob would match is refused.
            assert refused(p.call("LRANGE", "edge1xfrontend:a", 0, -1))
        assert refused(p.call("LRANGE", "other" + k["frontend"] + "x", 0, -1))
        refusals = [
            ("RPUSH", k["frontend"] + "www.example.com", "http://evil"),
            ("DEL", k["frontend"] + "www.example.com"),
            ("LSET", k["frontend"] + "www.example.com", 1, "http://evil"),
            ("DEL", k["tls"] + "www.example.com"),
            ("HSET", k["tls"] + "www.example.com", "key", "evil"),
            ("HGETALL", k["tls"] + "www.example.com"),
            ("SADD", k["frontend"] + "x", 1),
            ("SET", "hchecker_ping", 2),
            ("CONFIG", "GET", "*"), ("CONFIG", "SET", "dir", "/tmp"), ("FLUSHALL",), ("FLUSHDB",),
            ("KEYS", "*"), ("ACL", "LIST"), ("CLIENT", "LIST"), ("CLIENT", "KILL", "ID", "1"),
            ("SHUTDOWN",), ("SCRIPT", "FLUSH"), ("EVAL", "return 1", 0),
            ("MONITOR",), ("SWAPDB", 0, 1), ("PUBLISH", "other", "x"), ("SUBSCRIBE", "other"),
            ("PSUBSCRIBE", "*"),
        ]
        for cmd in refusals:
            assert refused(p.call(*cmd)), f"proxy may run {cmd}"
    with r.client("proxy") as p:
        # The certificate channel (one connection, as the proxy subscribes).
        assert p.call("SUBSCRIBE", "tls") == ["subscribe", "tls", 1]
        with r.client("syncer") as s:
            assert s.call("PUBLISH", "tls", "www.example.com") == 1
        assert p.read() == ["message", "tls", "www.example.com"]
    # Client tracking (`routeCache: tracking`): RESP3, invalidation pushes.
    with r.client("proxy", resp3=True) as p:
        assert p.call("CLIENT", "TRACKING", "ON") == "OK"
        assert p.call("LRANGE", k["frontend"] + "www.example.com", 0, -1)[0] == "id"
        with r.client("syncer") as s:
            s.call("RPUSH", k["frontend"] + "www.example.com", "http://127.0.0.1:2")
        deadline = time.monotonic() + 5
        while not p.pushes:
            p.sock.settimeout(max(0.05, deadline - time.monotonic()))
            v = p.read_any()
            if isinstance(v, Push):
                p.pushes.append(v)
        assert p.pushes[0].data == ["invalidate", [k["frontend"] + "www.example.com"]]


@pytest.mark.parametrize("case", list(RENDERS))
def test_syncer_user_writes_its_keys_only(case, redis_for):
    objs = render(*RENDERS[case])
    prefix = prefix_of(objs)
    k = keys_of(prefix)
    r = redis_for(objs)
    host = "app.example.com"
    with r.client("syncer") as s:
        # write_frontend: WATCH, read, MULTI DEL RPUSH DEL dead EXEC.
        assert s.call("WATCH", k["frontend"] + host) == "OK"
        assert s.call("LRANGE", k["frontend"] + host, 0, -1) == []
        assert s.call("MULTI") == "OK"
        for cmd in (("DEL", k["frontend"] + host), ("RPUSH", k["frontend"] + host, "k8s:ns/app", "http://10.0.0.1:80"),
                    ("DEL", k["dead"] + host)):
            assert s.call(*cmd) == "QUEUED"
        assert s.call("EXEC") == [0, 2, 0]
        # write_tls: WATCH, HGETALL, MULTI DEL HMSET PUBLISH EXEC.
        assert s.call("WATCH", k["tls"] + host) == "OK"
        assert s.call("HGETALL", k["tls"] + host) == []
        assert s.call("MULTI") == "OK"
        for cmd in (("DEL", k["tls"] + host), ("HMSET", k["tls"] + host, "cert", "C", "key", "K", "owner", "k8s:ns/app"),
                    ("PUBLISH", "tls", host)):
            assert s.call(*cmd) == "QUEUED"
        assert s.call("EXEC") == [0, "OK", 0]
        assert s.call("HSET", k["tls"] + host, "cert", "C2") == 0
        # An aborted transaction (someone wrote in between).
        assert s.call("WATCH", k["frontend"] + host) == "OK"
        with r.admin() as a:
            a.call("RPUSH", k["frontend"] + host, "http://10.0.0.2:80")
        s.call("MULTI")
        s.call("DEL", k["frontend"] + host)
        assert s.call("EXEC") is None
        assert s.call("WATCH", k["frontend"] + host) == "OK"
        assert s.call("UNWATCH") == "OK"
        s.call("MULTI")
        assert s.call("DISCARD") == "OK"
        # Resync and health checks: SCAN, dead marks, the checker's ping.
        cursor, found = s.call("SCAN", 0, "MATCH", glob_escape(k["frontend"]) + "*", "COUNT", 1000)
        assert found == [k["frontend"] + host]
        assert s.call("SADD", k["dead"] + host, 1) == 1
        assert s.call("EXPIRE", k["dead"] + host, 30) == 1
        assert s.call("SREM", k["dead"] + host, 1) == 1
        assert s.call("SET", "hchecker_ping", int(time.time())) == "OK"
        assert s.call("DEL", k["tls"] + host, k["frontend"] + host) == 2
        assert s.call("PING") == "PONG"
        if prefix:
            assert refused(s.call("RPUSH", "frontend:" + host, "x"))
            assert refused(s.call("HMSET", "tls:" + host, "key", "x"))
        refusals = [
            ("RPUSH", "other" + k["frontend"] + host, "x"), ("GET", "anything"), ("SET", "anything", 1),
            ("CONFIG", "GET", "*"), ("FLUSHALL",), ("FLUSHDB",), ("KEYS", "*"), ("ACL", "LIST"),
            ("CLIENT", "LIST"), ("CLIENT", "KILL", "ID", "1"), ("SHUTDOWN",),
            ("EVAL", "return 1", 0), ("MONITOR",), ("RENAME", k["frontend"] + "a", "other"),
            ("PUBLISH", "other", "x"), ("SUBSCRIBE", "other"),
        ]
        for cmd in refusals:
            assert refused(s.call(*cmd)), f"syncer may run {cmd}"
    with r.client("syncer") as s:
        # The dead channel, where proxies report failures.
        assert s.call("SUBSCRIBE", "dead") == ["subscribe", "dead", 1]
        with r.client("proxy") as p:
            assert p.call("PUBLISH", "dead", "a;http://x;0;2") == 1
        assert s.read() == ["message", "dead", "a;http://x;0;2"]


def test_tenants_manage_their_own_frontends_only(redis_for):
    objs = render(USERS_CASE)
    k = keys_of(prefix_of(objs))
    assert k["frontend"] == "edge:frontend:"
    r = redis_for(objs)
    with r.admin() as a:
        a.call("RPUSH", k["frontend"] + "globex.example", "globex", "http://10.0.0.9:80")
        a.call("HSET", k["tls"] + "www.acme.example", "cert", "C", "key", "K", "owner", "k8s:acme/www")
        a.call("RPUSH", k["frontend"] + "syncer.example", "k8s:ns/x", "http://10.0.0.8:80")
    with r.client("acme") as t:
        for host in ("acme.example", "www.acme.example", "*.acme.example", "a.b.acme.example"):
            key = k["frontend"] + host
            assert t.call("RPUSH", key, "acme", "http://10.0.0.1:80") == 2
            assert t.call("LRANGE", key, 0, -1) == ["acme", "http://10.0.0.1:80"]
            assert t.call("LSET", key, 1, "http://10.0.0.2:80") == "OK"
            assert t.call("SADD", k["dead"] + host, 0) == 1
            assert t.call("EXPIRE", k["dead"] + host, 30) == 1
            assert t.call("DEL", key, k["dead"] + host) == 2
        # Replacing a frontend atomically.
        assert t.call("MULTI") == "OK"
        t.call("DEL", k["frontend"] + "acme.example")
        t.call("RPUSH", k["frontend"] + "acme.example", "acme", "http://10.0.0.3:80")
        assert t.call("EXEC") == [0, 2]
        assert t.call("PING") == "PONG"
        refusals = [
            ("LRANGE", k["frontend"] + "globex.example", 0, -1),
            ("RPUSH", k["frontend"] + "globex.example", "http://evil"),
            ("DEL", k["frontend"] + "globex.example"),
            ("RPUSH", k["frontend"] + "evilacme.example", "x"),
            ("RPUSH", k["frontend"] + "acme.example.evil.com", "x"),
            ("RPUSH", k["frontend"] + "*", "x"),
            ("LRANGE", k["frontend"] + "syncer.example", 0, -1),
            ("RPUSH", "frontend:acme.example", "x"),  # outside the release's prefix
            ("HGETALL", k["tls"] + "www.acme.example"), ("HMGET", k["tls"] + "www.acme.example", "key"),
            ("HSET", k["tls"] + "www.acme.example", "key", "x"), ("DEL", k["tls"] + "www.acme.example"),
            ("SADD", k["dead"] + "globex.example", 0), ("SET", "hchecker_ping", 1), ("GET", "hchecker_ping"),
            ("KEYS", "*"), ("SCAN", 0), ("RANDOMKEY",), ("DBSIZE",), ("FLUSHALL",), ("FLUSHDB",),
            ("CONFIG", "GET", "*"), ("ACL", "LIST"), ("CLIENT", "LIST"), ("MONITOR",), ("EVAL", "return 1", 0),
            ("SUBSCRIBE", "dead"), ("PUBLISH", "dead", "x"), ("SUBSCRIBE", "tls"),
            ("RENAME", k["frontend"] + "acme.example", k["frontend"] + "globex.example"),
            ("COPY", k["frontend"] + "globex.example", k["frontend"] + "acme.example"),
            ("SORT", k["frontend"] + "acme.example", "BY", "nosort", "GET", k["frontend"] + "globex.example"),
        ]
        for cmd in refusals:
            assert refused(t.call(*cmd)), f"tenant acme may run {cmd}"
    with r.client("globex") as t:
        assert t.call("LRANGE", k["frontend"] + "globex.example", 0, -1)[0] == "globex"
        assert refused(t.call("LRANGE", k["frontend"] + "acme.example", 0, -1))
        assert refused(t.call("RPUSH", k["frontend"] + "www.globex.example", "x"))
    # redis-cli, as tenants run it, logs in with --user and REDISCLI_AUTH.
    env = {"PATH": os.environ.get("PATH", ""), "REDISCLI_AUTH": r.passwords["acme"].decode()}
    res = run(["redis-cli", "-p", str(r.port), "--user", "acme", "rpush", k["frontend"] + "cli.acme.example",
               "acme", "http://10.0.0.4:80"], env=env, timeout=10)
    assert res.returncode == 0 and res.stdout.strip() == "2", res.stdout + res.stderr
    res = run(["redis-cli", "-p", str(r.port), "--user", "acme", "hgetall", k["tls"] + "www.acme.example"],
              env=env, timeout=10)
    assert "NOPERM" in res.stdout + res.stderr


def test_legacy_password_keeps_tenants_writing_but_hides_tls(redis_for):
    objs = render(USERS_CASE)
    k = keys_of(prefix_of(objs))
    r = redis_for(objs)
    assert "default" in r.passwords, "legacyPassword: the shared password reaches Redis"
    with r.admin() as a:
        a.call("HSET", k["tls"] + "www.example.com", "cert", "C", "key", "K")
    with Resp(r.port) as c:
        assert c.call("AUTH", r.passwords["default"]) == "OK"
        assert c.call("RPUSH", k["frontend"] + "old.example.com", "old", "http://10.0.0.1:80") == 2
        assert c.call("KEYS", k["frontend"] + "*") == [k["frontend"] + "old.example.com"]
        for cmd in (("HGETALL", k["tls"] + "www.example.com"), ("DEL", k["tls"] + "www.example.com"),
                    ("CONFIG", "GET", "*"), ("FLUSHALL",), ("ACL", "LIST"), ("SET", "hchecker_ping", 1)):
            assert refused(c.call(*cmd)), f"the legacy password may run {cmd}"


def test_start_script_keeps_client_setinfo_on_redis_7_2_and_later(tmp_path):
    """The script drops `+client|setinfo` only for a Redis that has no
    CLIENT SETINFO (before 7.2); the chart's image is 7.4."""
    objs = render(None)
    _, c = redis_container(objs)
    acls = {}
    for version in ("7.4.2", "7.0.15"):
        root = tmp_path / version
        fake_bin = root / "bin"
        fake_bin.mkdir(parents=True)
        fake = fake_bin / "redis-server"
        fake.write_text(f"#!/bin/sh\n[ \"$1\" = --version ] && echo 'Redis server v={version} sha=0 bits=64'\n"
                        "exit 0\n")
        fake.chmod(0o755)
        for d in ("etc/redis", "etc/redis-users", "run/redis"):
            (root / d).mkdir(parents=True)
        cm = one(objs, "ConfigMap", "hipache-redis")
        (root / "etc/redis/users.acl").write_text(cm["data"]["users.acl"])
        for user in ("admin", "proxy", "syncer"):
            (root / "etc/redis-users" / user).write_text(f"{user}-pw")
        script = re.sub(r"(/etc/redis-users|/etc/redis|/run/redis)\b", lambda m: str(root) + m.group(1), c["command"][2])
        res = run(["sh", "-c", script], env={"PATH": f"{fake_bin}:/usr/bin:/bin"}, timeout=10)
        assert res.returncode == 0, res.stderr
        acls[version] = (root / "run/redis/users.acl").read_text()
    assert "+client|setinfo" in acls["7.4.2"]
    assert "+client|setinfo" not in acls["7.0.15"]
    assert acls["7.4.2"].replace(" +client|setinfo", "") == acls["7.0.15"]
    assert f"#{hashlib.sha256(b'proxy-pw').hexdigest()}" in acls["7.4.2"]


# --- the real binaries, as their users -------------------------------------------

class Backend:
    """An HTTP server on 127.0.0.1 answering `body` to every request."""

    def __init__(self, body: str):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                data = self.server.body.encode()
                self.send_response(200)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_HEAD = do_GET

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.body = body
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def container_env(c: dict, secrets: Secrets) -> dict[str, str]:
    env: dict[str, str] = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "secretKeyRef" in e["valueFrom"]:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = secrets.get(ref["name"], ref["key"]).decode()
        else:
            env[e["name"]] = "hipache-test"
    return env


def local_redis_url(url: str, port: int) -> str:
    """The chart's Redis URL pointed at the local server: same user,
    database and prefix."""
    new, n = re.subn(r"^(redis://(?:[^@/]*@)?)[^:/@]+:\d+", rf"\g<1>127.0.0.1:{port}", url)
    assert n == 1, url
    return new


def http_get(port: int, host: str, timeout: float = 5.0) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def served_certificate(port: int, sni: str) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            return s.getpeercert(binary_form=True)


def cert_for(tmp: Path, name: str) -> tuple[str, str]:
    d = tmp / f"cert-{name.replace('*', '_')}"
    d.mkdir()
    res = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
               "-keyout", str(d / "k.pem"), "-out", str(d / "c.pem"), "-days", "2", "-subj", f"/CN={name}",
               "-addext", f"subjectAltName=DNS:{name}"])
    assert res.returncode == 0, res.stderr
    return (d / "c.pem").read_text(), (d / "k.pem").read_text()


@dataclass
class Proxy:
    http: int
    https: int
    admin: int
    log: Path


def start_proxy(objs: list[dict], root: Path, secrets: Secrets, redis: RedisServer,
                procs: list[subprocess.Popen]) -> Proxy:
    """The chart's proxy container, replayed: its config (listeners moved
    to free 127.0.0.1 ports), its env with the Redis URL pointed at the
    local server."""
    w, c = proxy_parts(objs)
    root.mkdir(parents=True)
    mounts = materialize(objs, w, c, root)
    config_path = Path(mounts["/etc/hipache/config.yaml"])
    config = yaml.safe_load(config_path.read_text())
    p = Proxy(free_port(), free_port(), free_port(), root / "proxy.log")
    config["http"] = {**config["http"], "bind": ["127.0.0.1"], "port": p.http}
    if "https" in config:
        config["https"] = {**config["https"], "bind": ["127.0.0.1"], "port": p.https}
    config["server"]["adminAddress"] = f"127.0.0.1:{p.admin}"
    config_path.write_text(relocate(yaml.safe_dump(config), mounts))
    env = container_env(c, secrets)
    env["HIPACHE_DRIVER"] = local_redis_url(env["HIPACHE_DRIVER"], redis.port)
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    args = [relocate(a, mounts) for a in c["args"]]
    proc = spawn([str(bin_dir() / "hipache"), *args], p.log, env=env, cwd=root)
    procs.append(proc)
    until("the proxy's /readyz", lambda: urllib.request.urlopen(
        f"http://127.0.0.1:{p.admin}/readyz", timeout=2).status == 200, logs=[p.log, redis.log], procs=[proc])
    return p


def assert_nothing_refused(redis: RedisServer, logs: list[Path]) -> None:
    entries = redis.acl_log()
    if entries:
        raise AssertionError(f"Redis refused commands: {entries}\n{log_tails(logs, 2000)}")
    for p in logs:
        text = p.read_text(errors="replace")
        assert "NOPERM" not in text and "WRONGPASS" not in text, f"{p.name}:\n{text[-3000:]}"


PROXY_SETS = ("proxy.https.enabled=true", "proxy.config.routeCache=tracking")


@pytest.mark.parametrize("prefix", ["", GLOB_PREFIX], ids=["defaults", "prefix"])
def test_proxy_binary_serves_routes_as_the_proxy_user(prefix, redis_for, processes, tmp_path):
    sets = PROXY_SETS + ((f"redis.keyPrefix={prefix}",) if prefix else ())
    objs = render(None, sets)
    assert prefix_of(objs) == prefix
    k = keys_of(prefix)
    env = container_env(proxy_parts(objs)[1], Secrets(objs))
    assert env["HIPACHE_DRIVER"].startswith("redis://proxy:@")
    r = redis_for(objs)
    secrets = Secrets(objs)
    one_, two = Backend("one"), Backend("two")
    try:
        cert, key = cert_for(tmp_path, "secure.example.com")
        with r.admin() as a:
            refused_url = f"http://127.0.0.1:{free_port()}"
            a.call("RPUSH", k["frontend"] + "www.example.com", "www", one_.url, refused_url)
            a.call("HSET", k["tls"] + "secure.example.com", "cert", cert, "key", key)
        proxy = start_proxy(objs, tmp_path / "proxy", secrets, r, processes)
        logs = [proxy.log, r.log]
        # Routes are read, and the refusing backend is marked dead by the
        # proxy itself (SADD + EXPIRE + PUBLISH in MULTI): requests retry.
        with r.admin() as a:
            def marked():
                assert http_get(proxy.http, "www.example.com") == (200, "one")
                return a.call("SMEMBERS", k["dead"] + "www.example.com") == ["1"]
            until("a dead mark written by the proxy", marked, logs=logs)
            assert 0 < a.call("TTL", k["dead"] + "www.example.com") <= 30
            # Client tracking: a write is seen without a restart.
            a.call("DEL", k["frontend"] + "www.example.com")
            a.call("RPUSH", k["frontend"] + "www.example.com", "www", two.url)
        until("the new backend", lambda: http_get(proxy.http, "www.example.com") == (200, "two"), logs=logs)
        # Certificates: loaded by SCAN, and a published host is loaded at once.
        until("the Redis certificate", lambda: served_certificate(proxy.https, "secure.example.com")
              == ssl.PEM_cert_to_DER_cert(cert), logs=logs)
        cert2, key2 = cert_for(tmp_path, "late.example.com")
        with r.admin() as a:
            a.call("HSET", k["tls"] + "late.example.com", "cert", cert2, "key", key2)
            a.call("PUBLISH", "tls", "late.example.com")
        until("the published certificate", lambda: served_certificate(proxy.https, "late.example.com")
              == ssl.PEM_cert_to_DER_cert(cert2), deadline=10, logs=logs)
        # A fleet-wide rate limit: the bucket is kept in Redis by the proxy's
        # script (EVALSHA; SCRIPT LOAD with it once the cache is flushed).
        limited = "limited.example.com"
        bucket = k["ratelimit"] + f"{limited}:host:all"
        doc = {"id": "limited", "rules": [{"backends": [{"url": one_.url}]}],
               "policies": {"rateLimit": {"requests": 1, "period": "1m", "key": "all", "onRedisDown": "deny"}}}
        with r.admin() as a:
            a.call("SET", k["routes"] + limited, json.dumps(doc))
            until("the rate-limited host", lambda: http_get(proxy.http, limited)[0] == 200, logs=logs)
            assert http_get(proxy.http, limited)[0] == 429
            assert a.call("EXISTS", bucket) == 1
            a.call("SCRIPT", "FLUSH")
            a.call("DEL", bucket)
            assert [http_get(proxy.http, limited)[0] for _ in range(2)] == [200, 429]
        assert_nothing_refused(r, logs)
    finally:
        one_.stop()
        two.stop()


# --- the syncer, fed by a static fake Kubernetes API ------------------------------

KINDS = {
    "ingresses": ("Ingress", "networking.k8s.io/v1"),
    "ingressclasses": ("IngressClass", "networking.k8s.io/v1"),
    "services": ("Service", "v1"),
    "endpointslices": ("EndpointSlice", "discovery.k8s.io/v1"),
    "secrets": ("Secret", "v1"),
    "events": ("Event", "events.k8s.io/v1"),
    "leases": ("Lease", "coordination.k8s.io/v1"),
}


class FakeApi:
    """Lists, gets and watches fixed objects (watches stay open and quiet),
    accepts status patches and Events: enough for the syncer to write its
    routes. Listens on 127.0.0.1."""

    def __init__(self, objects: list[dict]):
        self.objects = objects
        self.stopping = threading.Event()
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, code: int, obj: dict):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def target(self):
                path, _, query = self.path.partition("?")
                parts = path.strip("/").split("/")
                rest = parts[2:] if parts[0] == "api" else parts[3:]
                ns = None
                if len(rest) > 2 and rest[0] == "namespaces":
                    ns, rest = rest[1], rest[2:]
                q = dict(kv.split("=", 1) for kv in query.split("&") if "=" in kv)
                return rest[0], ns, rest[1] if len(rest) > 1 else None, q

            def matching(self, plural, ns, name, q):
                kind = KINDS.get(plural, ("", ""))[0]
                field = urllib.request.unquote(q.get("fieldSelector", ""))
                out = []
                for o in api.objects:
                    m = o["metadata"]
                    if o["kind"] != kind or (ns and m.get("namespace") != ns) or (name and m["name"] != name):
                        continue
                    if field.startswith("metadata.name=") and m["name"] != field.split("=", 1)[1]:
                        continue
                    out.append(o)
                return out

            def do_GET(self):
                plural, ns, name, q = self.target()
                if q.get("watch") in ("true", "1"):
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    self.wfile.flush()
                    while not api.stopping.wait(0.2):
                        pass
                    self.close_connection = True
                    return
                found = self.matching(plural, ns, name, q)
                if name:
                    if found:
                        return self.reply(200, found[0])
                    return self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                            "reason": "NotFound", "code": 404, "metadata": {}})
                kind, version = KINDS.get(plural, ("Unknown", "v1"))
                self.reply(200, {"kind": f"{kind}List", "apiVersion": version,
                                 "metadata": {"resourceVersion": "10"}, "items": found})

            def body(self):
                n = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(n) if n else b"{}"
                try:
                    return json.loads(raw)
                except ValueError:
                    return yaml.safe_load(raw) or {}

            def do_PATCH(self):
                plural, ns, name, q = self.target()
                body = self.body()
                found = self.matching(plural, ns, name, q)
                if not found:
                    return self.reply(404, {"kind": "Status", "apiVersion": "v1", "code": 404, "metadata": {}})
                obj = json.loads(json.dumps(found[0]))
                if "status" in body:
                    obj["status"] = body["status"]
                self.reply(200, obj)

            def do_POST(self):
                obj = self.body()
                obj.setdefault("metadata", {}).setdefault("name", "event")
                self.reply(201, obj)

            do_PUT = do_POST

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def meta(name: str, ns: str | None = "shop", **extra) -> dict:
    m = {"name": name, "uid": f"uid-{name}", "resourceVersion": "5", "creationTimestamp": "2024-01-01T00:00:00Z"}
    if ns:
        m["namespace"] = ns
    m.update(extra)
    return m


def cluster_objects(backend_port: int, cert: str, key: str) -> list[dict]:
    """An Ingress with TLS for app.example.com; its Service has a live
    endpoint (127.0.0.1) and one that refuses (127.0.0.2)."""
    return [
        {"kind": "IngressClass", "apiVersion": "networking.k8s.io/v1", "metadata": meta("hipache", None),
         "spec": {"controller": "hipache.io/ingress-controller"}},
        {"kind": "Ingress", "apiVersion": "networking.k8s.io/v1", "metadata": meta("app"),
         "spec": {"ingressClassName": "hipache",
                  "tls": [{"hosts": ["app.example.com"], "secretName": "app-tls"}],
                  "rules": [{"host": "app.example.com", "http": {"paths": [
                      {"path": "/", "pathType": "Prefix",
                       "backend": {"service": {"name": "app", "port": {"number": 80}}}}]}}]}},
        {"kind": "Service", "apiVersion": "v1", "metadata": meta("app"),
         "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10",
                  "ports": [{"name": "http", "port": 80, "targetPort": backend_port, "protocol": "TCP"}]}},
        {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
         "metadata": meta("app-1", labels={"kubernetes.io/service-name": "app"}), "addressType": "IPv4",
         "ports": [{"name": "http", "port": backend_port, "protocol": "TCP"}],
         "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}},
                       {"addresses": ["127.0.0.2"], "conditions": {"ready": True}}]},
        {"kind": "Secret", "apiVersion": "v1", "metadata": meta("app-tls"), "type": "kubernetes.io/tls",
         "data": {"tls.crt": base64.b64encode(cert.encode()).decode(),
                  "tls.key": base64.b64encode(key.encode()).decode()}},
    ]


def start_syncer(objs: list[dict], root: Path, secrets: Secrets, redis: RedisServer, api: FakeApi,
                 procs: list[subprocess.Popen]) -> Path:
    """The chart's syncer container, replayed: its flags (admin address
    moved to a free 127.0.0.1 port, probes every 200 ms), its env with the
    Redis URL pointed at the local server, a kubeconfig for the fake API."""
    d = one(objs, "Deployment", "hipache-syncer")
    c = next(c for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "hipache-syncer")
    root.mkdir(parents=True)
    args = []
    for a in c["args"]:
        if a.startswith("--admin-address="):
            a = f"--admin-address=127.0.0.1:{free_port()}"
        elif a.startswith("--health-interval-ms="):
            a = "--health-interval-ms=200"
        args.append(a)
    env = container_env(c, secrets)
    env["HIPACHE_SYNCER_REDIS_URL"] = local_redis_url(env["HIPACHE_SYNCER_REDIS_URL"], redis.port)
    kubeconfig = root / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{api.port}"}}],
        "users": [{"name": "fake", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "hipache"}}],
    }))
    env.update({"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KUBECONFIG": str(kubeconfig), "HOME": str(root)})
    log = root / "syncer.log"
    procs.append(spawn([str(bin_dir() / "hipache-syncer"), *args], log, env=env, cwd=root))
    return log


@pytest.mark.parametrize("prefix", ["", GLOB_PREFIX], ids=["defaults", "prefix"])
def test_syncer_and_proxy_binaries_work_as_their_users(prefix, redis_for, processes, tmp_path):
    sets = PROXY_SETS + ((f"redis.keyPrefix={prefix}",) if prefix else ())
    objs = render(None, sets)
    k = keys_of(prefix)
    secrets = Secrets(objs)
    r = redis_for(objs)
    backend = Backend("app")
    cert, key = cert_for(tmp_path, "app.example.com")
    stale_cert, stale_key = cert_for(tmp_path, "old.example.com")
    api = FakeApi(cluster_objects(backend.port, cert, key))
    try:
        with r.admin() as a:
            # Left over from a deleted Ingress (the syncer's), and a tenant's.
            a.call("RPUSH", k["frontend"] + "old.example.com", "k8s:shop/old", "http://127.0.0.1:1")
            a.call("HSET", k["tls"] + "old.example.com", "cert", stale_cert, "key", stale_key, "owner", "k8s:shop/old")
            a.call("RPUSH", k["frontend"] + "tenant.example.com", "tenant", backend.url)
        log = start_syncer(objs, tmp_path / "syncer", secrets, r, api, processes)
        logs = [log, r.log]
        want = ["k8s:shop/app", backend.url, f"http://127.0.0.2:{backend.port}"]
        with r.admin() as a:
            until("the Ingress's frontend", lambda: sorted(
                a.call("LRANGE", k["frontend"] + "app.example.com", 0, -1)) == sorted(want), logs=logs)
            tls = until("the Ingress's certificate",
                        lambda: a.call("HGETALL", k["tls"] + "app.example.com"), logs=logs)
            tls = dict(zip(tls[::2], tls[1::2]))
            assert tls["owner"] == "k8s:shop/app" and tls["cert"].strip() == cert.strip()
            until("the stale frontend and certificate removed", lambda: a.call(
                "EXISTS", k["frontend"] + "old.example.com", k["tls"] + "old.example.com") == 0, logs=logs)
            assert a.call("LRANGE", k["frontend"] + "tenant.example.com", 0, -1) == ["tenant", backend.url]
            # Health checks: the refusing endpoint is marked dead, the ping kept fresh.
            listed = a.call("LRANGE", k["frontend"] + "app.example.com", 0, -1)
            dead = str(listed.index(f"http://127.0.0.2:{backend.port}") - 1)
            until("a dead mark written by the syncer",
                  lambda: a.call("SMEMBERS", k["dead"] + "app.example.com") == [dead], logs=logs)
            until("hchecker_ping", lambda: abs(int(a.call("GET", "hchecker_ping") or 0) - time.time()) < 30, logs=logs)
        # The proxy serves what the syncer wrote (certificate included), and
        # its dead events reach the syncer.
        proxy = start_proxy(objs, tmp_path / "proxy", secrets, r, processes)
        logs.append(proxy.log)
        until("the Ingress through the proxy", lambda: http_get(proxy.http, "app.example.com") == (200, "app"),
              logs=logs)
        until("the Ingress's certificate through the proxy", lambda: served_certificate(
            proxy.https, "app.example.com") == ssl.PEM_cert_to_DER_cert(cert), logs=logs)
        with r.admin() as a:
            assert a.call("PUBSUB", "NUMSUB", "dead") == ["dead", 1], "the syncer follows the dead channel"
        assert_nothing_refused(r, logs)
    finally:
        api.stop()
        backend.stop()


# --- what the code sends, against the rules --------------------------------------

SOURCES = {
    "proxy": ["proxy/src/routing/redis.rs", "proxy/src/routing/reader.rs", "proxy/src/routing/deadmark.rs",
              "proxy/src/tls/redis.rs", "proxy/src/ratelimit/redis.rs", "proxy/src/ratelimit/gcra.lua"],
    "syncer": ["syncer/src/store.rs", "syncer/src/health.rs"],
}
# redis-rs typed methods (and `.atomic()`) in those files, by command
# (`keys`, also a map method, is left out).
METHODS = {
    "lrange": "lrange", "hgetall": "hgetall", "hset_multiple": "hmset", "hset": "hset", "rpush": "rpush",
    "lpush": "lpush", "sadd": "sadd", "srem": "srem", "smembers": "smembers", "expire": "expire",
    "publish": "publish", "subscribe": "subscribe", "psubscribe": "psubscribe", "del": "del", "hdel": "hdel",
    "hget": "hget", "incr": "incr", "scan_match": "scan", "set_ex": "setex", "getset": "getset",
    "atomic": "multi exec",
}


def sent_commands(role: str) -> set[str]:
    """Commands the role's Redis code names: `cmd("X")`, typed methods of
    redis-rs, GET/SET on a connection, and `redis.call('X')` in a Lua
    script."""
    found = set()
    for rel in SOURCES[role]:
        text = (ROOT / rel).read_text()
        text = re.sub(r"(?s)#\[cfg\(test\)\].*", "", text)
        for m in re.finditer(r'\bcmd\("([A-Za-z]+)"\)', text):
            found.add(m.group(1).lower())
        for m in re.finditer(r"\bredis\.call\('([A-Za-z]+)'", text):
            found.add(m.group(1).lower())
        for m in re.finditer(r"\.([a-z_]+)\s*(?:::<[^()]*?>)?\(", text):
            if m.group(1) in METHODS:
                found.update(METHODS[m.group(1)].split())
        for m in re.finditer(r"\bcon\.(get|set)\b", text):
            found.add(m.group(1))
    return found


def allowed_commands(rules: str) -> set[str]:
    tokens = (t.strip("()") for t in rules.split())
    return {t[1:].lower() for t in tokens if t.startswith("+") and not t.startswith("+@")}


@pytest.mark.parametrize("role", list(SOURCES))
def test_every_command_the_code_sends_is_allowed(role):
    line = next(line for line in one(render(None), "ConfigMap", "hipache-redis")["data"]["users.acl"].splitlines()
                if line.startswith(f"user {role} "))
    sent = sent_commands(role)
    assert len(sent) >= 8, f"no Redis commands found in {SOURCES[role]}: {sent}"
    allowed = {c.split("|")[0] for c in allowed_commands(line)}
    assert sent <= allowed, f"{role} sends commands its ACL user may not run: {sorted(sent - allowed)}"
    # Redis also sees CLIENT TRACKING (proxy) and CLIENT SETINFO (redis-rs).
    assert "client|setinfo" in allowed_commands(line)


# --- the documentation's rules are the chart's -------------------------------------

def test_security_doc_shows_the_charts_rules():
    doc = (ROOT / "docs/security.md").read_text()
    section = doc[doc.index("## Redis users"):]
    section = section[: m.start()] if (m := re.search(r"^## (?!Redis users)", section[3:], re.M)) else section
    acl = one(render(USERS_CASE), "ConfigMap", "hipache-redis")["data"]["users.acl"]
    rendered = {line.split()[1]: " ".join(line.split()[2:]) for line in acl.splitlines()}
    default_acl = one(render(None), "ConfigMap", "hipache-redis")["data"]["users.acl"]
    plain = {line.split()[1]: " ".join(line.split()[2:]) for line in default_acl.splitlines()}
    documented = dict(re.findall(r"^ACL SETUSER (\S+) (.*?) >\S+$", section, re.M))
    assert documented, "no ACL SETUSER lines in docs/security.md"
    for user in ("proxy", "syncer"):
        assert documented.get(user) == plain[user], f"docs/security.md shows other rules for {user}"
    # The tenant example is the CI values' acme tenant, without the prefix.
    assert documented.get("acme") == rendered["acme"].replace("edge:", "")
