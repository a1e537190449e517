"""The Lua scripts that change counters: settlement of a batch, and the reservation sweep.

Each script runs atomically in Valkey, so whatever it decides (applied or duplicate,
exhausted or not) is decided once, for every accountant process at the same time.

SETTLE applies a batch of usage events (protocol step 3 of `arks_common.ledger`) and
re-evaluates the exhaustion state of every account the batch touches; with no events
it only re-evaluates (a limit changed, a period rolled over). It refuses to run when
the epoch sentinel is not the one the caller restored (`{"EPOCH", <current>}`), so
nothing is ever applied to a Valkey that lost its data before it is restored.
SWEEP releases expired reservations (protocol step 4), RELEASE_LAPSED those of routers
whose lease lapsed (step 5), on Valkey's clock as the routers' leases are, and
FORGET_LAPSED drops leases that lapsed long ago from the registry.

SETTLE takes one JSON document and returns one (Lua cjson on Valkey's side, orjson on
ours), which costs far less than thousands of separate arguments. Counters read back
travel as decimal strings, and deltas go to Valkey formatted with %d, so none is rounded
or printed in exponent form on the way.

The scripts build some key names from prefixes the caller computes with
`arks_common.ledger` and `arks_accountant.keys`, so every key is still named in one
place; they touch several quotas' keys in one call, which a standalone Valkey/Redis
(or a primary with replicas) allows and Redis Cluster does not.

Counters are 64-bit integers in Valkey; the deltas a script sums in Lua are doubles,
exact up to 2^53 per batch (9e15 nano units of money).
"""

from __future__ import annotations

from typing import Final

SETTLE: Final = r"""
local req = cjson.decode(ARGV[1])
local current = redis.call('GET', req.epoch_key)
if current ~= req.epoch then
  return cjson.encode({status = 'EPOCH', current = current or ''})
end
local TTL = req.ttl
-- one command per event sets the done-marker and reads an earlier one (Redis 7 / Valkey)
local SET_NX_GET = (tonumber(redis.REDIS_VERSION_NUM) or 0) >= 0x070000
local CHANGE_REASON = req.reason
local USUF, RSUF = req.used_suffixes, req.reserved_suffixes
local KINDS = {'prompt', 'response', 'total', 'cost'}
local FIELDS = {'requests', 'prompt', 'cached', 'completion', 'total'}

-- integers go to Valkey as decimal strings: Lua would print large ones as 1e+15
local function int(x) return string.format('%d', x) end

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

local acc, groups = req.accounts, req.groups
local sums = {}
for g = 1, #groups do sums[g] = {0, 0, 0, 0, 0} end
local results = {}
for i, ev in ipairs(req.events) do
  -- {group, request id, marker, prompt, completion, cached, cost}
  local a = acc[groups[ev[1]][1]]
  local done = a.dprefix .. ev[2]
  local marker
  if SET_NX_GET then
    marker = redis.call('SET', done, ev[3], 'NX', 'GET', 'EX', TTL)
  else
    marker = redis.call('GET', done)
    if not marker then redis.call('SET', done, ev[3], 'EX', TTL) end
  end
  if marker then
    results[i] = marker
  else
    if a.rprefix ~= '' then
      local resv = a.rprefix .. ev[2]
      local r = redis.call('HMGET', resv, 'period', 'prompt', 'response', 'total', 'cost')
      if r[1] then
        for k = 1, 4 do
          local d = tonumber(r[k + 1] or '0') or 0
          if d ~= 0 then add(decr, a.prefix .. r[1] .. RSUF[k], d) end
        end
        redis.call('DEL', resv)
        redis.call('ZREM', a.idx, ev[2])
      end
    end
    local s = sums[ev[1]]
    s[1] = s[1] + 1
    s[2] = s[2] + ev[4]
    s[3] = s[3] + ev[6]
    s[4] = s[4] + ev[5]
    s[5] = s[5] + ev[7]
    results[i] = 1
  end
end

for g, grp in ipairs(groups) do
  -- {account, period, period ttl, token, endpoint, token usage key, endpoint usage key}
  local s = sums[g]
  if s[1] > 0 then
    local a = acc[grp[1]]
    local tok, ep = grp[4], grp[5]
    local cost = s[5]
    local vals = {s[1], s[2], s[3], s[4], s[2] + s[4]}
    if a.quota then
      local period, pttl = grp[2], grp[3]
      local used = {s[2], s[4], s[2] + s[4], cost}
      for k = 1, 4 do
        local key = a.prefix .. period .. USUF[k]
        add(incr, key, used[k])
        if pttl > 0 then incr_ttl[key] = pttl end
        hadd(a.key, 'p:' .. period .. ':' .. KINDS[k], used[k])
      end
    end
    usage(a.key, 'a:', vals, a.costf, cost)
    usage(a.key, 't:' .. tok .. ':', vals, a.costf, cost)
    usage(a.key, 'e:' .. ep .. ':', vals, a.costf, cost)
    usage(grp[6], '', vals, a.costf, cost)
    usage(grp[7], '', vals, a.costf, cost)
    usage(a.qusage, '', vals, a.costf, cost)
    usage(a.nsusage, '', vals, a.costf, cost)
    member(a.tokidx, tok)
    member(a.epidx, ep)
    if a.quota then member(a.qidx, a.qname) end
  end
end

for key, d in pairs(decr) do
  local v = redis.call('DECRBY', key, int(d))
  if v < 0 then redis.call('INCRBY', key, int(-v)) end
end
for key, d in pairs(incr) do
  redis.call('INCRBY', key, int(d))
  local t = incr_ttl[key]
  if t then redis.call('EXPIRE', key, t) end
end
for key, h in pairs(hincr) do
  for field, d in pairs(h) do redis.call('HINCRBY', key, field, int(d)) end
end
for key, s in pairs(sets) do
  for m in pairs(s) do redis.call('SADD', key, m) end
end
for _, a in ipairs(acc) do
  if a.ns ~= '' then redis.call('SADD', req.namespaces_key, a.ns) end
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
  local used = {'0', '0', '0', '0'}
  if not a.quota or not a.evaluate then return 0, 0, '', '', used end
  local cur = a.cur
  local u = redis.call('HMGET', a.key, 'p:' .. cur .. ':prompt', 'p:' .. cur .. ':response',
                       'p:' .. cur .. ':total', 'p:' .. cur .. ':cost', 'sp', 'se')
  local ex, kinds = 0, {}
  for k = 1, 4 do
    used[k] = u[k] or '0'
    local lim = a.limits[k]
    if lim >= 0 and (tonumber(used[k]) or 0) >= lim then ex = 1; kinds[#kinds + 1] = KINDS[k] end
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
for i, a in ipairs(acc) do
  local ver = redis.call('HINCRBY', a.key, 'ver', 1)
  local notice, ex, reason, kinds, used = evaluate(a)
  if a.pkey ~= '' then redis.call('SET', a.pkey, a.pjson, 'EX', a.pttl) end
  local flat = redis.call('HGETALL', a.key)
  local fields = {}
  for j = 1, #flat, 2 do fields[flat[j]] = flat[j + 1] end
  out[i] = {ver = tostring(ver), notice = notice, exhausted = ex, reason = reason,
            kinds = kinds, used = used, fields = fields}
end
return cjson.encode({status = 'OK', results = results, accounts = out})
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
  local v = redis.call('DECRBY', key, string.format('%d', d))
  if v < 0 then redis.call('INCRBY', key, string.format('%d', -v)) end
end
return released
"""

RELEASE_LAPSED: Final = r"""
local rset, registry, idx, rprefix, cprefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local min_age, limit = tonumber(ARGV[6]), tonumber(ARGV[7])
local RSUF = {ARGV[8], ARGV[9], ARGV[10], ARGV[11]}
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now = math.floor(now_ms / 1000)
-- routers that reserved here and hold no live lease: value = their reservations kept
local lapsed, any = {}, false
for _, rid in ipairs(redis.call('SMEMBERS', rset)) do
  local score = redis.call('ZSCORE', registry, rid)
  if not score or tonumber(score) <= now_ms then
    lapsed[rid] = 0
    any = true
  end
end
if not any then return 0 end
local decr, released, complete = {}, 0, true
for _, id in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
  local key = rprefix .. id
  local r = redis.call('HMGET', key, 'router', 'at', 'period', 'prompt', 'response', 'total',
                       'cost')
  local kept = r[1] and lapsed[r[1]]
  if kept then
    if released >= limit then
      complete = false
      break
    end
    if now - (tonumber(r[2]) or 0) >= min_age then
      for k = 1, 4 do
        local d = tonumber(r[k + 3] or '0') or 0
        if d ~= 0 then
          local c = cprefix .. r[3] .. RSUF[k]
          decr[c] = (decr[c] or 0) + d
        end
      end
      redis.call('DEL', key)
      redis.call('ZREM', idx, id)
      released = released + 1
    else
      lapsed[r[1]] = kept + 1
    end
  end
end
for key, d in pairs(decr) do
  local v = redis.call('DECRBY', key, string.format('%d', d))
  if v < 0 then redis.call('INCRBY', key, string.format('%d', -v)) end
end
if complete then
  for rid, kept in pairs(lapsed) do
    if kept == 0 then redis.call('SREM', rset, rid) end
  end
end
return released
"""

FORGET_LAPSED: Final = r"""
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local horizon = now_ms - tonumber(ARGV[2])
return redis.call('ZREMRANGEBYSCORE', ARGV[1], '-inf', string.format('%d', horizon))
"""
