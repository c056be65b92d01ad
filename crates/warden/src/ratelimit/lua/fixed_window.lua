local window = now - math.fmod(now, period)
local state = redis.call('HMGET', key, 'w', 'n')
local count = 0
if tonumber(state[1]) == window then count = tonumber(state[2]) end
local reset = window + period - now
local allowed = count + cost <= limit
if allowed then count = count + cost end
redis.call('HSET', key, 'w', int(window), 'n', int(count))
keep(math.max(period, reset))
local retry = -1
if not allowed then retry = reset end
return {allowed and 1 or 0, limit, math.max(limit - count, 0), reset, retry, -1}
