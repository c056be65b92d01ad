-- A list of admission times, oldest first.
while true do
  local first = redis.call('LINDEX', key, 0)
  if not first or tonumber(first) + period > now then break end
  redis.call('LPOP', key)
end
local used = redis.call('LLEN', key)
local allowed = used + cost <= limit
if allowed then
  for _ = 1, cost do redis.call('RPUSH', key, int(now)) end
  used = used + cost
end
local retry = -1
if not allowed then
  -- The request could pass once enough of the oldest entries age out.
  local needed = math.max(used + cost - limit, 0)
  local entry = redis.call('LINDEX', key, math.max(needed - 1, 0))
  if entry then retry = tonumber(entry) + period - now else retry = period end
end
local reset = 0
local last = redis.call('LINDEX', key, -1)
if last then reset = tonumber(last) + period - now end
keep(math.max(period, reset))
return {allowed and 1 or 0, limit, math.max(limit - used, 0), reset, retry, -1}
