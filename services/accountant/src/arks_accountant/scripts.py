"""The Lua scripts that change counters: settlement of a batch, and the reservation sweep.

Each script runs atomically in Valkey, so whatever it decides (applied or duplicate,
exhausted or not) is decided once, for every accountant process at the same time.

SETTLE applies a batch of usage events (protocol step 3 of `arks_common.ledger`) and
re-evaluates the exhaustion state of every account the batch touches; with no events
it only re-evaluates (a limit changed, a period rolled over). It refuses to run when
the epoch sentinel is not the one the caller restored (`{"EPOCH", <current>}`), so
nothing is ever applied to a Valkey that lost its data before it is restored.
SWEEP releases expired reservations (protocol step 4).

The scripts build some key names from prefixes the caller computes with
`arks_common.ledger` and `arks_accountant.keys`, so every key is still named in one
place; they touch several quotas' keys in one call, which a standalone Valkey/Redis
(or a primary with replicas) allows and Redis Cluster does not.

Counters are 64-bit integers in Valkey; the deltas a script sums in Lua are doubles,
exact up to 2^53 per batch (9e15 nano units of money).
"""

from __future__ import annotations

from typing import Final

SETTLE_HEADER: Final = 15
SETTLE_ACCOUNT: Final = 22
SETTLE_EVENT: Final = 15

SETTLE: Final = r"""
local EPOCH_KEY, EXPECTED = ARGV[1], ARGV[2]
local TTL = tonumber(ARGV[3])
local NA, NE = tonumber(ARGV[4]), tonumber(ARGV[5])
local CHANGE_REASON = ARGV[6]
local USUF = {ARGV[7], ARGV[8], ARGV[9], ARGV[10]}
local RSUF = {ARGV[11], ARGV[12], ARGV[13], ARGV[14]}
local NSKEY = ARGV[15]
local H, A, E = 15, 22, 15
local KINDS = {'prompt', 'response', 'total', 'cost'}
local FIELDS = {'requests', 'prompt', 'cached', 'completion', 'total'}

local current = redis.call('GET', EPOCH_KEY)
if current ~= EXPECTED then
  return {'EPOCH', current or ''}
end

local incr, incr_ttl, decr, hincr, sets = {}, {}, {}, {}, {}
local function add(tbl, key, d) tbl[key] = (tbl[key] or 0) + d end
local function hadd(key, field, d)
  local h = hincr[key]
  if not h then h = {}; hincr[key] = h end
  h[field] = (h[field] or 0) + d
end
local function member(key, m)
  if key == '' then return end
  local s = sets[key]
  if not s then s = {}; sets[key] = s end
  s[m] = true
end
local function usage(key, prefix, vals, costf, cost)
  if key == '' then return end
  for f = 1, 5 do
    if vals[f] ~= 0 then hadd(key, prefix .. FIELDS[f], vals[f]) end
  end
  if cost ~= 0 then hadd(key, prefix .. costf, cost) end
end
local function older(x, y)
  return string.sub(x, 1, 1) == string.sub(y, 1, 1) and x < y
end

local acc = {}
for i = 1, NA do
  local b = H + (i - 1) * A
  acc[i] = {
    key = ARGV[b + 1], quota = ARGV[b + 2] == '1', prefix = ARGV[b + 3], idx = ARGV[b + 4],
    evaluate = ARGV[b + 5] == '1', cur = ARGV[b + 6],
    limits = {tonumber(ARGV[b + 7]), tonumber(ARGV[b + 8]), tonumber(ARGV[b + 9]),
              tonumber(ARGV[b + 10])},
    prune = ARGV[b + 11], qusage = ARGV[b + 12], nsusage = ARGV[b + 13], costf = ARGV[b + 14],
    tokidx = ARGV[b + 15], epidx = ARGV[b + 16], qidx = ARGV[b + 17], ns = ARGV[b + 18],
    qname = ARGV[b + 19], pkey = ARGV[b + 20], pjson = ARGV[b + 21], pttl = ARGV[b + 22],
  }
end

local results = {}
local eb = H + NA * A
for i = 1, NE do
  local b = eb + (i - 1) * E
  local a = acc[tonumber(ARGV[b + 1])]
  local rid, done = ARGV[b + 2], ARGV[b + 3]
  local marker = redis.call('GET', done)
  if marker then
    results[i] = marker
  else
    local resv = ARGV[b + 5]
    if resv ~= '' then
      local r = redis.call('HMGET', resv, 'period', 'prompt', 'response', 'total', 'cost')
      if r[1] then
        for k = 1, 4 do
          local d = tonumber(r[k + 1] or '0') or 0
          if d ~= 0 then add(decr, a.prefix .. r[1] .. RSUF[k], d) end
        end
        redis.call('DEL', resv)
        redis.call('ZREM', a.idx, rid)
      end
    end
    local prompt, completion = tonumber(ARGV[b + 8]), tonumber(ARGV[b + 9])
    local cached, cost = tonumber(ARGV[b + 10]), tonumber(ARGV[b + 11])
    local total = prompt + completion
    local tok, ep = ARGV[b + 12], ARGV[b + 13]
    if a.quota then
      local period, pttl = ARGV[b + 6], tonumber(ARGV[b + 7])
      local used = {prompt, completion, total, cost}
      for k = 1, 4 do
        local key = a.prefix .. period .. USUF[k]
        add(incr, key, used[k])
        if pttl > 0 then incr_ttl[key] = pttl end
        hadd(a.key, 'p:' .. period .. ':' .. KINDS[k], used[k])
      end
    end
    local vals = {1, prompt, cached, completion, total}
    usage(a.key, 'a:', vals, a.costf, cost)
    usage(a.key, 't:' .. tok .. ':', vals, a.costf, cost)
    usage(a.key, 'e:' .. ep .. ':', vals, a.costf, cost)
    usage(ARGV[b + 14], '', vals, a.costf, cost)
    usage(ARGV[b + 15], '', vals, a.costf, cost)
    usage(a.qusage, '', vals, a.costf, cost)
    usage(a.nsusage, '', vals, a.costf, cost)
    member(a.tokidx, tok)
    member(a.epidx, ep)
    if a.quota then member(a.qidx, a.qname) end
    redis.call('SET', done, ARGV[b + 4], 'EX', TTL)
    results[i] = 1
  end
end

for key, d in pairs(decr) do
  local v = redis.call('DECRBY', key, d)
  if v < 0 then redis.call('INCRBY', key, -v) end
end
for key, d in pairs(incr) do
  redis.call('INCRBY', key, d)
  local t = incr_ttl[key]
  if t then redis.call('EXPIRE', key, t) end
end
for key, h in pairs(hincr) do
  for field, d in pairs(h) do redis.call('HINCRBY', key, field, d) end
end
for key, s in pairs(sets) do
  for m in pairs(s) do redis.call('SADD', key, m) end
end
for i = 1, NA do
  if acc[i].ns ~= '' then redis.call('SADD', NSKEY, acc[i].ns) end
end

local function prune(a)
  local fields = redis.call('HKEYS', a.key)
  for _, f in ipairs(fields) do
    if string.sub(f, 1, 2) == 'p:' then
      local period = string.match(f, '^p:(.*):[^:]*$')
      if period and older(period, a.prune) then redis.call('HDEL', a.key, f) end
    end
  end
end

local function evaluate(a)
  local used = {0, 0, 0, 0}
  if not a.quota or not a.evaluate then return 0, 0, '', '', used end
  local cur = a.cur
  local u = redis.call('HMGET', a.key, 'p:' .. cur .. ':prompt', 'p:' .. cur .. ':response',
                       'p:' .. cur .. ':total', 'p:' .. cur .. ':cost', 'sp', 'se')
  local ex, kinds = 0, {}
  for k = 1, 4 do
    used[k] = tonumber(u[k] or '0') or 0
    local lim = a.limits[k]
    if lim >= 0 and used[k] >= lim then ex = 1; kinds[#kinds + 1] = KINDS[k] end
  end
  local sp, se = u[5], tonumber(u[6] or '0')
  if sp and sp ~= cur and older(cur, sp) then
    -- this process's clock is behind the one that already rolled the period over
    return 0, se, '', '', used
  end
  local notice, reason = 0, ''
  if not sp then
    if ex == 1 then notice, reason = 1, 'exhausted' end
  elseif sp ~= cur then
    if se == 1 and ex == 0 then notice, reason = 1, 'reset'
    elseif se == 0 and ex == 1 then notice, reason = 1, 'exhausted' end
  elseif se ~= ex then
    notice = 1
    if CHANGE_REASON ~= '' then reason = CHANGE_REASON
    elseif ex == 1 then reason = 'exhausted'
    else reason = 'limit_changed' end
  end
  if sp ~= cur or se ~= ex then
    redis.call('HSET', a.key, 'sp', cur, 'se', ex)
    if sp and sp ~= cur and a.prune ~= '' then prune(a) end
  end
  return notice, ex, reason, table.concat(kinds, ','), used
end

local out = {}
for i = 1, NA do
  local a = acc[i]
  local ver = redis.call('HINCRBY', a.key, 'ver', 1)
  local notice, ex, reason, kinds, used = evaluate(a)
  if a.pkey ~= '' then redis.call('SET', a.pkey, a.pjson, 'EX', a.pttl) end
  out[i] = {ver, notice, ex, reason, kinds, used, redis.call('HGETALL', a.key)}
end
return {'OK', results, out}
"""

SWEEP: Final = r"""
local idx, rprefix, cprefix = ARGV[1], ARGV[2], ARGV[3]
local now, limit = ARGV[4], tonumber(ARGV[5])
local RSUF = {ARGV[6], ARGV[7], ARGV[8], ARGV[9]}
local ids = redis.call('ZRANGEBYSCORE', idx, '-inf', now, 'LIMIT', 0, limit)
local decr, released = {}, 0
for _, rid in ipairs(ids) do
  local key = rprefix .. rid
  local r = redis.call('HMGET', key, 'period', 'prompt', 'response', 'total', 'cost')
  if r[1] then
    for k = 1, 4 do
      local d = tonumber(r[k + 1] or '0') or 0
      if d ~= 0 then
        local c = cprefix .. r[1] .. RSUF[k]
        decr[c] = (decr[c] or 0) + d
      end
    end
    redis.call('DEL', key)
    released = released + 1
  end
  redis.call('ZREM', idx, rid)
end
for key, d in pairs(decr) do
  local v = redis.call('DECRBY', key, d)
  if v < 0 then redis.call('INCRBY', key, -v) end
end
return released
"""
