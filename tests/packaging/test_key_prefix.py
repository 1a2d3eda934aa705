"""`redis.keyPrefix` means one set of keys to both binaries.

The chart escapes the prefix into the fragment of each binary's Redis URL
(`hipache:` becomes `#hipache%3A`); the proxy and the syncer must decode it
alike, or the syncer writes keys no proxy reads. The chart is rendered with
a prefix; the syncer's `--check-config`, given its container's flags and
environment, reports the key prefix it uses; then the proxy binary runs
with its container's configuration and environment, the driver URL pointed
at a real redis-server on a free 127.0.0.1 port, and must route a host
written under that prefix (and not one written under the prefix as the URL
spells it, escaped).

Everything listens on 127.0.0.1 and runs under `timeout` in its own process
group; each group is killed at the end of the test (the `processes`
fixture).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from helpers import bin_dir, find, free_port, render, run, spawn, tool, until
from test_binaries import FAKE_PASSWORD, materialize, proxy_parts, relocate, resolve_env, run_syncer

# `hipache:` is the documented example; the other needs every kind of escape
# the chart makes (`/`, `#`, `%`) and would collide with URL syntax raw.
PREFIXES = ["hipache:", "t/1#a%b:"]
# The chart's ACL users with their passwords apart, and no auth at all.
AUTH = {"auth": (), "no-auth": ("redis.auth.enabled=false",)}


class Redis:
    """A redis-server on a free 127.0.0.1 port: the default user for the
    test's own writes, and the ACL users the chart's URLs name."""

    def __init__(self, root: Path, users: dict[str, str], procs: list[subprocess.Popen]):
        self.port = free_port()
        self.log = root / "redis.log"
        conf = root / "redis.conf"
        lines = [f"port {self.port}", "bind 127.0.0.1", 'save ""', "appendonly no", f"dir {root}",
                 "user default on nopass ~* &* +@all"]
        lines += [f"user {u} on >{pw} ~* &* +@all" for u, pw in users.items()]
        conf.write_text("\n".join(lines) + "\n")
        proc = spawn([tool("redis-server"), str(conf)], self.log, cwd=root)
        procs.append(proc)
        until("redis-server", lambda: self.run("PING").stdout.strip() == "PONG", logs=[self.log], procs=[proc])

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return run([tool("redis-cli"), "-h", "127.0.0.1", "-p", str(self.port), *args], timeout=10)

    def cli(self, *args: str) -> str:
        res = self.run(*args)
        assert res.returncode == 0 and not res.stdout.startswith("(error)"), res.stdout + res.stderr
        return res.stdout.strip()


class Backend:
    """An HTTP server on 127.0.0.1 answering `body` to every request."""

    def __init__(self, body: str):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                data = body.encode()
                self.send_response(200)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def http_get(port: int, host: str) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def fragment(url: str) -> str:
    """The URL's `#…` as the chart wrote it (escaped)."""
    return url.partition("#")[2]


def acl_user(url: str) -> str | None:
    return urllib.parse.unquote(urllib.parse.urlsplit(url).username or "") or None


def local_url(url: str, port: int) -> str:
    """The chart's Redis URL pointed at the local server: same user,
    database and prefix."""
    new, n = re.subn(r"^(rediss?://(?:[^@/]*@)?)[^/#@]+", rf"\g<1>127.0.0.1:{port}", url)
    assert n == 1, url
    return new


def syncer_container(objs: list[dict]) -> dict:
    d = find(objs, "Deployment", "hipache-syncer")
    assert len(d) == 1
    return next(c for c in d[0]["spec"]["template"]["spec"]["containers"] if c["name"] == "hipache-syncer")


def syncer_target(objs: list[dict], tmp: Path) -> tuple[str, str]:
    """(censored Redis target, key prefix) that `hipache-syncer
    --check-config` reports for the rendered container."""
    c = syncer_container(objs)
    res = run_syncer([*c["args"], "--check-config"], resolve_env(c), tmp)
    assert res.returncode == 0, res.stderr[-3000:]
    target = re.search(r"^redis: (.*)$", res.stdout, re.M)
    prefix = re.search(r"^key prefix: (\".*\")$", res.stdout, re.M)
    assert target and prefix, f"--check-config does not report the Redis target and prefix:\n{res.stdout}"
    assert FAKE_PASSWORD not in res.stdout + res.stderr
    return target.group(1), json.loads(prefix.group(1))


def start_proxy(objs: list[dict], root: Path, redis: Redis, procs: list[subprocess.Popen]) -> tuple[int, Path]:
    """The chart's proxy container, replayed: its config with the
    listeners moved to free 127.0.0.1 ports, its env with the driver URL
    pointed at the local Redis. Returns the HTTP port and the log."""
    w, c = proxy_parts(objs)
    mounts = materialize(objs, w, c, root)
    config_path = Path(mounts["/etc/hipache/config.yaml"])
    config = yaml.safe_load(config_path.read_text())
    http_port, admin_port = free_port(), free_port()
    config["http"] = {**config["http"], "bind": ["127.0.0.1"], "port": http_port}
    config.pop("https", None)
    config["server"]["adminAddress"] = f"127.0.0.1:{admin_port}"
    config_path.write_text(relocate(yaml.safe_dump(config), mounts))
    env = {**resolve_env(c), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env["HIPACHE_DRIVER"] = local_url(env["HIPACHE_DRIVER"], redis.port)
    log = root / "proxy.log"
    args = [relocate(a, mounts) for a in c.get("args", [])]
    proc = spawn([str(bin_dir() / "hipache"), *args], log, env=env, cwd=root)
    procs.append(proc)
    until("the proxy's /readyz", lambda: urllib.request.urlopen(
        f"http://127.0.0.1:{admin_port}/readyz", timeout=2).status == 200, logs=[log, redis.log], procs=[proc])
    return http_port, log


@pytest.mark.parametrize("auth", AUTH.values(), ids=AUTH.keys())
@pytest.mark.parametrize("prefix", PREFIXES, ids=["hipache", "escapes"])
def test_key_prefix_is_one_set_of_keys_for_proxy_and_syncer(prefix, auth, tmp_path, processes):
    objs = render(None, (f"redis.keyPrefix={prefix}", *auth))
    _, proxy_c = proxy_parts(objs)
    proxy_env = resolve_env(proxy_c)
    syncer_env = resolve_env(syncer_container(objs))
    driver, syncer_url = proxy_env["HIPACHE_DRIVER"], syncer_env["HIPACHE_SYNCER_REDIS_URL"]
    # The chart escapes the prefix, the same way for both.
    escaped = fragment(driver)
    assert escaped == fragment(syncer_url) and escaped != prefix, (driver, syncer_url)

    # The syncer reads the configured prefix.
    target, syncer_prefix = syncer_target(objs, tmp_path)
    assert syncer_prefix == prefix, target
    if "HIPACHE_SYNCER_REDIS_PASSWORD" in syncer_env:
        assert ":***@" in target, target

    # The proxy routes what is written under the syncer's prefix.
    users = {}
    for url, env, var in [(driver, proxy_env, "HIPACHE_REDIS_PASSWORD"),
                          (syncer_url, syncer_env, "HIPACHE_SYNCER_REDIS_PASSWORD")]:
        if var in env:
            assert acl_user(url), f"a password without an ACL user: {url}"
            users[acl_user(url)] = env[var]
    redis = Redis(tmp_path, users, processes)
    routed, misread = Backend("routed"), Backend("misread")
    try:
        redis.cli("RPUSH", f"{syncer_prefix}frontend:routed.example", "routed", routed.url)
        # Where a reader of the undecoded fragment would look.
        redis.cli("RPUSH", f"{escaped}frontend:misread.example", "misread", misread.url)
        root = tmp_path / "proxy"
        root.mkdir()
        port, log = start_proxy(objs, root, redis, processes)
        status, body = http_get(port, "routed.example")
        assert (status, body) == (200, "routed"), log.read_text(errors="replace")[-3000:]
        status, body = http_get(port, "misread.example")
        assert status != 200 and body != "misread", (status, body)
    finally:
        routed.stop()
        misread.stop()
