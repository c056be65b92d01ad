-- Head of every Warden script that reads time: `key` is KEYS[1], `now` (microseconds) is ARGV[1]
-- or, when that is '', the Redis server's own clock, so instances with skewed clocks agree.
if redis.replicate_commands then redis.replicate_commands() end
local key = KEYS[1]
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
