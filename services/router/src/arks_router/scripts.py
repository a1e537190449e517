"""The Lua scripts of admission and settlement (run atomically inside Redis/Valkey).

Both use the server's clock (`TIME`, allowed since Redis 7's effect replication and in
every Valkey), so router replicas with skewed clocks still share exact windows.
Window layout: see `arks_router.limits`. Quota layout: `arks_common.ledger`.

ADMIT
  KEYS  window hashes (R of them), then per limited quota kind its `used` and
        `reserved` counters (2Q), then the reservation hash, the reservation index
        and the quota's set of reserving routers (only when Q > 0).
  ARGV  request id, R, Q, quota period, reservation expiry (unix seconds from now),
        router id, then per rule: bucket_ms, buckets, limit, cost,
        then per quota kind: kind, limit, estimate.
  Checks every rule (`total + cost <= limit`; a limit of 0 admits nothing) and every
  quota kind (`used + reserved + estimate <= limit`). Only if all pass: charges every
  window's current bucket, adds the estimates to `reserved`, writes the reservation
  hash (period, prompt, response, total, cost, expires, router, at), indexes it by
  expiry and adds the router to the quota's reserving routers (ledger step 5).
  Returns {admitted, denied, retry_ms, held, (remaining, reset_ms, bucket) per rule}
  where denied = i for rule i, -j for quota kind j, 0 when admitted; for a quota
  kind, held = 1 when only reservations in flight stand in the way (`used +
  estimate` fits the limit), 0 when the used budget itself leaves no room. A kind
  with no room at all is reported before one that is merely held.

SETTLE
  KEYS  window hashes of the token rules.
  ARGV  per key: bucket_ms, buckets, bucket index of the reservation, delta.
  Adds delta (actual - reserved) to the reservation's bucket while that bucket is
  still in the window (never below zero); once it has left the window a positive
  delta is charged to the current bucket and a negative one is moot.
"""

from __future__ import annotations

_WINDOW_LIB = r"""
local CHUNK = 500

-- Integers as Redis arguments: Lua's default number format turns 1e15 into "1e+15".
local function int(x)
  return string.format('%d', x)
end

local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Evict the buckets that left the window; returns the live total and the head index.
local function slide(key, cur, nb)
  local oldest = cur - nb + 1
  local v = redis.call('HMGET', key, 't', 'h')
  local total = tonumber(v[1]) or 0
  local head = tonumber(v[2])
  if head == nil then
    return 0, oldest
  end
  if head >= oldest then
    return total, head
  end
  if oldest - head >= nb or total <= 0 then
    redis.call('DEL', key)
    return 0, oldest
  end
  local b = head
  while b < oldest do
    local last = math.min(oldest - 1, b + CHUNK - 1)
    local fields = {}
    for i = b, last do fields[#fields + 1] = int(i) end
    local vals = redis.call('HMGET', key, unpack(fields))
    for i = 1, #vals do
      if vals[i] then total = total - tonumber(vals[i]) end
    end
    redis.call('HDEL', key, unpack(fields))
    b = last + 1
  end
  if total < 0 then total = 0 end
  redis.call('HSET', key, 't', int(total), 'h', int(oldest))
  return total, oldest
end

-- Milliseconds until `need` units have left the window (walks the oldest buckets).
local function wait_for(key, need, head, cur, nb, bms, now)
  local freed = 0
  local b = head
  while b <= cur do
    local last = math.min(cur, b + CHUNK - 1)
    local fields = {}
    for i = b, last do fields[#fields + 1] = int(i) end
    local vals = redis.call('HMGET', key, unpack(fields))
    for i = 1, #vals do
      if vals[i] then
        freed = freed + tonumber(vals[i])
        if freed >= need then
          return (b + i - 1 + nb) * bms - now
        end
      end
    end
    b = last + 1
  end
  return nb * bms
end
"""

ADMIT = (
    _WINDOW_LIB
    + r"""
local now = clock_ms()
local R = tonumber(ARGV[2])
local Q = tonumber(ARGV[3])
local a = 7
local rules = {}
local denied = 0
local retry = 0
for i = 1, R do
  local key = KEYS[i]
  local bms = tonumber(ARGV[a])
  local nb = tonumber(ARGV[a + 1])
  local limit = tonumber(ARGV[a + 2])
  local cost = tonumber(ARGV[a + 3])
  a = a + 4
  local cur = math.floor(now / bms)
  local total, head = slide(key, cur, nb)
  rules[i] = {key, bms, nb, limit, cost, cur, total, head}
  if denied == 0 and (limit <= 0 or total + cost > limit) then
    denied = i
    if limit <= 0 or cost > limit then
      retry = nb * bms
    else
      retry = wait_for(key, total + cost - limit, head, cur, nb, bms, now)
    end
  end
end
local quota = {}
local held = 0
for j = 1, Q do
  local kind = ARGV[a]
  local limit = tonumber(ARGV[a + 1])
  local est = tonumber(ARGV[a + 2])
  a = a + 3
  local used = tonumber(redis.call('GET', KEYS[R + 2 * j - 1]) or '0')
  local reserved = tonumber(redis.call('GET', KEYS[R + 2 * j]) or '0')
  quota[j] = {kind, est}
  if (denied == 0 or held == 1) and used + est > limit then
    denied, held = -j, 0
  elseif denied == 0 and used + reserved + est > limit then
    denied, held = -j, 1
  end
end
local out = {denied == 0 and 1 or 0, denied, retry, held}
for i = 1, R do
  local r = rules[i]
  local charged = r[7]
  if denied == 0 then charged = charged + r[5] end
  out[#out + 1] = math.max(0, r[4] - charged)
  out[#out + 1] = (r[6] + r[3]) * r[2] - now
  out[#out + 1] = r[6]
end
if denied ~= 0 then
  return out
end
for i = 1, R do
  local r = rules[i]
  if r[5] > 0 then
    redis.call('HINCRBY', r[1], int(r[6]), int(r[5]))
  end
  redis.call('HSET', r[1], 't', int(r[7] + r[5]), 'h', int(r[8]))
  redis.call('PEXPIRE', r[1], (r[3] + 1) * r[2])
end
if Q > 0 then
  local expires = math.floor(now / 1000) + tonumber(ARGV[5])
  local fields = {prompt = 0, response = 0, total = 0, cost = 0}
  for j = 1, Q do
    local est = quota[j][2]
    if est > 0 then
      redis.call('INCRBY', KEYS[R + 2 * j], int(est))
    end
    fields[quota[j][1]] = est
  end
  redis.call('HSET', KEYS[R + 2 * Q + 1], 'period', ARGV[4],
    'prompt', int(fields.prompt), 'response', int(fields.response),
    'total', int(fields.total), 'cost', int(fields.cost), 'expires', int(expires),
    'router', ARGV[6], 'at', int(math.floor(now / 1000)))
  redis.call('ZADD', KEYS[R + 2 * Q + 2], int(expires), ARGV[1])
  redis.call('SADD', KEYS[R + 2 * Q + 3], ARGV[6])
end
return out
"""
)

SETTLE = (
    _WINDOW_LIB
    + r"""
local now = clock_ms()
local a = 1
for i = 1, #KEYS do
  local key = KEYS[i]
  local bms = tonumber(ARGV[a])
  local nb = tonumber(ARGV[a + 1])
  local b = tonumber(ARGV[a + 2])
  local delta = tonumber(ARGV[a + 3])
  a = a + 4
  if delta ~= 0 then
    local cur = math.floor(now / bms)
    local total, head = slide(key, cur, nb)
    local applied = 0
    if b >= head and b <= cur then
      local v = tonumber(redis.call('HGET', key, int(b)) or '0')
      applied = delta
      if v + applied < 0 then applied = -v end
      if applied ~= 0 then redis.call('HINCRBY', key, int(b), int(applied)) end
    elseif delta > 0 then
      applied = delta
      redis.call('HINCRBY', key, int(cur), int(applied))
    end
    total = total + applied
    if total < 0 then total = 0 end
    redis.call('HSET', key, 't', int(total), 'h', int(head))
    redis.call('PEXPIRE', key, (nb + 1) * bms)
  end
end
return 1
"""
)
