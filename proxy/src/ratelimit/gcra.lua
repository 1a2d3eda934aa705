-- One request against a GCRA bucket, on Redis's clock, so that every
-- proxy sharing this Redis shares one timeline (their own clocks may
-- disagree). KEYS[1]: the bucket, holding its theoretical arrival time
-- (TAT) in microseconds since the Unix epoch. ARGV[1]: the emission
-- interval (period / requests), ARGV[2]: the tolerance (burst * interval),
-- both in microseconds. Returns {1, 0} when the request conforms (the TAT
-- advanced by one interval) or {0, wait} with the microseconds until it
-- would. The key expires when the bucket is full again, so an idle client
-- leaves nothing behind. The text of this script is hashed for EVALSHA:
-- changing it changes its SHA1, nothing else.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local wait = tat - now - tolerance
if wait > 0 then
  return {0, wait}
end
local new = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', string.format('%.0f', math.ceil((new - now) / 1000)))
return {1, 0}
