-- Up to ARGV[3] requests (a lease, at least 1) against a GCRA bucket, on
-- Redis's clock, so that every proxy sharing this Redis shares one
-- timeline (their own clocks may disagree). KEYS[1]: the bucket, holding
-- its theoretical arrival time (TAT) in microseconds since the Unix epoch.
-- ARGV[1]: the emission interval (period / requests), ARGV[2]: the
-- tolerance (burst * interval), both in microseconds. Returns {n, 0} when
-- n requests (1 to ARGV[3]) conform, taken one after the other (the TAT
-- advanced by n intervals), or {0, wait} with the microseconds until one
-- would. The key expires when the bucket is full again, so an idle client
-- leaves nothing behind. The text of this script is hashed for EVALSHA:
-- changing it changes its SHA1, nothing else.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local want = math.max(1, tonumber(ARGV[3]) or 1)
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
-- How far the TAT may still advance: the k-th request taken conforms
-- while tat + (k - 1) * interval - now <= tolerance.
local room = now + tolerance - tat
if room < 0 then
  return {0, -room}
end
local granted = math.min(want, math.floor(room / interval) + 1)
local new = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', string.format('%.0f', math.ceil((new - now) / 1000)))
return {granted, 0}
