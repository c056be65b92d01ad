-- The theoretical arrival time of the next unit (token bucket; leaky bucket when shaping).
local interval = math.max(div(period, limit), 1)
local tolerance = interval * (capacity - 1)
local tat = now
local stored = tonumber(redis.call('GET', key))
if stored ~= nil and stored > now then tat = stored end
local new_tat = tat + interval * cost
local allow_at = math.max(new_tat - interval - tolerance, 0)
local allowed, delay, retry = false, -1, -1
if allow_at <= now then
  allowed = true
elseif max_delay >= 0 and allow_at - now <= max_delay then
  allowed = true
  delay = allow_at - now
else
  retry = allow_at - now
end
if allowed then tat = new_tat end
local backlog = math.max(tat - now, 0)
redis.call('SET', key, int(tat), 'PX', math.ceil(math.max(period, backlog) / 1000) + 1)
local remaining = math.min(div(math.max(tolerance + interval - backlog, 0), interval), capacity)
return {allowed and 1 or 0, capacity, remaining, backlog, retry, delay}
