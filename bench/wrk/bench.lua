-- wrk script used by bench/run for every wrk run.
--
-- BENCH_HOSTS=N (env): each request gets a random Host among
-- h1.bench.local .. hN.bench.local (requests are formatted once, at load).
-- Unset: wrk's own static request (Host from -H).
--
-- done() prints one machine-readable line that bench.py parses.

local n = tonumber(os.getenv("BENCH_HOSTS") or "")
if n and n > 0 then
  local reqs = {}
  for i = 1, n do
    reqs[i] = wrk.format("GET", "/", { ["Host"] = "h" .. i .. ".bench.local" })
  end
  math.randomseed(os.time())
  request = function()
    return reqs[math.random(n)]
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
