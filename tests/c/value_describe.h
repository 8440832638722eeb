/* value_describe.h: describe(v), Lua source shared by the C value tests
 * and the fuzz_values target: a canonical text of v (keys sorted, tables
 * numbered in visiting order, so shared references and cycles show; a
 * function renders as its result), equal in two states exactly when the
 * values are isomorphic.  Keys must be scalars or functions. */
#ifndef LUAHOST_TEST_VALUE_DESCRIBE_H
#define LUAHOST_TEST_VALUE_DESCRIBE_H

#define VALUE_DESCRIBE_LUA \
  "local function keystr(k)\n" \
  "  local mt = math.type(k)\n" \
  "  if mt == 'integer' then return 'i' .. k end\n" \
  "  if mt == 'float' then return 'f' .. string.format('%a', k) end\n" \
  "  if type(k) == 'string' then return 's' .. string.format('%q', k) end\n" \
  "  if type(k) == 'function' then return 'fn:' .. tostring(k()) end\n" \
  "  return type(k) .. ':' .. tostring(k)\n" \
  "end\n" \
  "function describe(v)\n" \
  "  local ids, n, out = {}, 0, {}\n" \
  "  local function walk(x)\n" \
  "    if type(x) ~= 'table' then out[#out + 1] = keystr(x) return end\n" \
  "    if ids[x] then out[#out + 1] = '@' .. ids[x] return end\n" \
  "    n = n + 1 ids[x] = n\n" \
  "    local keys, byname = {}, {}\n" \
  "    for k in next, x do\n" \
  "      local s = keystr(k)\n" \
  "      assert(byname[s] == nil, 'two keys render alike: ' .. s)\n" \
  "      keys[#keys + 1] = s byname[s] = k\n" \
  "    end\n" \
  "    table.sort(keys)\n" \
  "    out[#out + 1] = '{'\n" \
  "    for _, s in ipairs(keys) do\n" \
  "      out[#out + 1] = s .. '='\n" \
  "      walk(rawget(x, byname[s]))\n" \
  "      out[#out + 1] = ','\n" \
  "    end\n" \
  "    out[#out + 1] = '}'\n" \
  "  end\n" \
  "  walk(v)\n" \
  "  return table.concat(out)\n" \
  "end\n"

#endif
