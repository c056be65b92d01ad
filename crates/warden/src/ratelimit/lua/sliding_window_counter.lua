local window = now - math.fmod(now, period)
local state = redis.call('HMGET', key, 'w', 'c', 'p')
local w = tonumber(state[1])
local current, previous = 0, 0
if w == window then
  current = tonumber(state[2])
  previous = tonumber(state[3])
elseif w ~= nil and w + period == window then
  previous = tonumber(state[2])
end
-- Weight the previous window by how much of it the sliding window still covers.
local estimate = div(previous * (period - (now - window)), period) + current
local allowed = estimate + cost <= limit and current + cost <= limit
if allowed then current = current + cost end
redis.call('HSET', key, 'w', int(window), 'c', int(current), 'p', int(previous))
keep(period * 2)
local reset = window + period - now
local used = estimate
local retry = reset
if allowed then
  used = used + cost
  retry = -1
end
return {allowed and 1 or 0, limit, math.max(limit - used, 0), reset, retry, -1}
