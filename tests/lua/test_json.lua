-- json module (SPEC §11), run by `luahost test --app tests/lua/app` (its
-- memory_limit is 8m: TestJsonMemory relies on it).
local lu = require "luaunit"
local json = require "json"

-- Debian's lua-cjson, for comparison: on package.cpath, else by path.
local cjson
do
  local ok, m = pcall(require, "cjson")
  if ok then
    cjson = m
  else
    local f = package.loadlib("/usr/lib/x86_64-linux-gnu/lua/5.4/cjson.so", "luaopen_cjson")
    cjson = f and f()
  end
end

-- Deep equality; strict: numbers must have the same subtype too (and -0.0
-- its sign).  Metatables are not compared.
local function same(a, b, strict, seen)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then
    if strict then
      if math.type(a) ~= math.type(b) then return false end
      if a == 0 and math.type(a) == "float" and 1 / a ~= 1 / b then return false end
    end
    return a == b
  end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not same(v, b[k], strict) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function assert_same(a, b, strict)
  if not same(a, b, strict) then
    lu.fail(string.format("values differ:\n  %s\n  %s", json.encode(a, {sort_keys = true}),
                          json.encode(b, {sort_keys = true})))
  end
end

local function encode_error(v, opts)
  local ok, err = pcall(json.encode, v, opts)
  lu.assertFalse(ok, "encode should have failed")
  return err
end

local function decode_error(s)
  local ok, err = pcall(json.decode, s)
  lu.assertFalse(ok, "decode should have failed: " .. s)
  return err
end

TestJsonApi = {}

function TestJsonApi:test_module_fields()
  for _, f in ipairs {"encode", "decode", "array", "new"} do
    lu.assertEquals(type(json[f]), "function", f)
  end
  lu.assertEquals(type(json.null), "userdata")
  lu.assertEquals(type(json.array_mt), "table")
  lu.assertEquals(getmetatable(json.empty_array), json.array_mt)
  lu.assertIs(json.empty_array_mt, json.array_mt)
  lu.assertNil(next(json.empty_array))
end

function TestJsonApi:test_null_both_ways()
  lu.assertEquals(json.encode(json.null), "null")
  lu.assertEquals(json.decode("null"), json.null)
  lu.assertEquals(json.encode({1, json.null, 3}), "[1,null,3]")
  local t = json.decode('{"a":null}')
  lu.assertEquals(t.a, json.null)
  lu.assertEquals(json.encode(nil), "null")
end

function TestJsonApi:test_empty_array_and_array_mt()
  lu.assertEquals(json.encode(json.empty_array), "[]")
  lu.assertEquals(json.encode({}), "{}")
  lu.assertEquals(json.encode(setmetatable({}, json.array_mt)), "[]")
  lu.assertEquals(json.encode({a = json.empty_array}), '{"a":[]}')
  local t = {1, 2}
  lu.assertIs(json.array(t), t)
  lu.assertIs(getmetatable(t), json.array_mt)
  lu.assertEquals(json.encode(json.array()), "[]")
  lu.assertEquals(json.encode(json.array({"x"})), '["x"]')
  lu.assertErrorMsgContains("table expected", json.array, 42)
end

function TestJsonApi:test_decoded_arrays_stay_arrays()
  lu.assertEquals(json.encode(json.decode("[]")), "[]")
  lu.assertEquals(json.encode(json.decode('{"a":[],"b":{}}'), {sort_keys = true}), '{"a":[],"b":{}}')
  lu.assertIs(getmetatable(json.decode("[1]")), json.array_mt)
  lu.assertNil(getmetatable(json.decode('{"a":1}')))
end

function TestJsonApi:test_new_gives_an_independent_module()
  local j2 = json.new()
  lu.assertNotIs(j2, json)
  lu.assertEquals(j2.encode({1, {a = 2.5}}), '[1,{"a":2.5}]')
  lu.assertEquals(j2.decode("[1]")[1], 1)
  lu.assertEquals(j2.null, json.null)
  -- arrays marked by one instance encode as arrays with the other
  lu.assertEquals(j2.encode(json.array({})), "[]")
  lu.assertEquals(json.encode(j2.empty_array), "[]")
end

function TestJsonApi:test_argument_errors()
  lu.assertErrorMsgContains("bad argument #1", json.encode)
  lu.assertErrorMsgContains("bad argument #1", json.decode, {})
  lu.assertErrorMsgContains("bad argument #2", json.encode, 1, 5)
  lu.assertErrorMsgContains("indent", json.encode, 1, {indent = -1})
  lu.assertErrorMsgContains("indent", json.encode, 1, {indent = "x"})
  lu.assertErrorMsgContains("indent", json.encode, 1, {indent = 1.5})
end

-- A __gc metamethod may run inside any allocation of encode or decode
-- and call json itself: the inner call must not use the outer one's buffer.
function TestJsonApi:test_finalizers_that_call_json_meanwhile()
  local calls = 0
  local mt = {__gc = function()
    calls = calls + 1
    local s = json.encode({"fin", string.rep("z", 300)})
    assert(json.decode(s)[1] == "fin")
    json.decode('["\\n' .. string.rep("y", 300) .. '"]')
  end}
  local v = {}
  for i = 1, 300 do v[i] = {s = string.rep("\u{e9}\n", i % 40), n = i + 0.5} end
  local want, sorted = json.encode(v), json.encode(v, {sort_keys = true})
  local text = '["' .. string.rep("a\\n", 3000) .. '"]'
  local decoded = json.decode(text)[1]
  collectgarbage("incremental", 10, 1000)
  for _ = 1, 30 do
    for _ = 1, 300 do setmetatable({}, mt) end
    lu.assertEquals(json.encode(v), want)
    lu.assertEquals(json.encode(v, {sort_keys = true}), sorted)   -- allocates as it goes
    lu.assertEquals(json.decode(text)[1], decoded)
  end
  collectgarbage("incremental", 200, 100)
  collectgarbage()
  lu.assertTrue(calls > 0)
end

-- Background threads get the serve context's modules: json is one.
function TestJsonApi:test_available_in_background_threads()
  if require("runtime").role() ~= "backend" then return end   -- frontends start none
  local bt = require "background_thread"
  local t = bt.BackgroundThread {target = function(s)
    local j = require "json"
    local v = j.decode(s)
    v.seen = true
    return j.encode(v, {sort_keys = true})
  end, args = {'{"n":1,"f":1.0}'}}
  t:start()
  local ok, out = t:join(30)
  lu.assertTrue(ok)
  lu.assertEquals(out, '{"f":1.0,"n":1,"seen":true}')
end

TestJsonNumbers = {}

function TestJsonNumbers:test_decode_keeps_subtypes()
  lu.assertEquals(math.type(json.decode("1")), "integer")
  lu.assertEquals(math.type(json.decode("-17")), "integer")
  lu.assertEquals(math.type(json.decode("0")), "integer")
  for _, s in ipairs {"1.0", "1e2", "1E2", "1e+2", "1e-2", "-1.5", "0.0", "-0.0", "2.5E-3"} do
    lu.assertEquals(math.type(json.decode(s)), "float", s)
  end
  lu.assertEquals(json.decode("1e2"), 100.0)
  lu.assertEquals(json.decode("2.5E-3"), 0.0025)
  lu.assertEquals(1 / json.decode("-0.0"), -math.huge)
end

function TestJsonNumbers:test_int64_exact_both_ways()
  local cases = {math.maxinteger, math.mininteger, 0, -1, 9007199254740993, -9007199254740993,
                 1234567890123456789}
  for _, v in ipairs(cases) do
    local s = json.encode(v)
    lu.assertEquals(s, string.format("%d", v))
    local back = json.decode(s)
    lu.assertEquals(math.type(back), "integer")
    lu.assertEquals(back, v)
  end
  lu.assertEquals(json.decode("9223372036854775807"), math.maxinteger)
  lu.assertEquals(json.decode("-9223372036854775808"), math.mininteger)
end

function TestJsonNumbers:test_integer_literal_beyond_int64_is_a_float()
  for _, s in ipairs {"9223372036854775808", "-9223372036854775809", "18446744073709551616",
                      "123456789012345678901234567890"} do
    local v = json.decode(s)
    lu.assertEquals(math.type(v), "float", s)
    lu.assertEquals(v, tonumber(s .. ".0"), s)
  end
end

function TestJsonNumbers:test_floats_print_shortest_and_stay_floats()
  local cases = {   -- pairs: float table keys would turn into integers
    {1.0, "1.0"}, {0.1, "0.1"}, {1e300, "1e+300"}, {-2.5, "-2.5"}, {100.0, "100.0"},
    {0.1 + 0.2, "0.30000000000000004"}, {1 / 3, "0.3333333333333333"}, {123.456, "123.456"},
    {2 ^ 53, "9007199254740992.0"}, {1e-7, "1e-07"}, {1.5e-10, "1.5e-10"}, {1e17, "1e+17"},
    {5e-324, "5e-324"}, {1.7976931348623157e308, "1.7976931348623157e+308"},
    {2 ^ 63, "9.223372036854776e+18"}, {0.00001, "0.00001"}, {1e16, "10000000000000000.0"},
  }
  for _, c in ipairs(cases) do lu.assertEquals(json.encode(c[1]), c[2]) end
  lu.assertEquals(json.encode(-0.0), "-0.0")
  lu.assertEquals(json.encode(0.0), "0.0")
end

function TestJsonNumbers:test_random_floats_round_trip_exactly()
  math.randomseed(7)
  for _ = 1, 20000 do
    local v = string.unpack("<d", string.pack("<i8", math.random(math.mininteger, math.maxinteger)))
    if v == v and v ~= math.huge and v ~= -math.huge then
      local s = json.encode(v)
      local back = json.decode(s)
      if math.type(back) ~= "float" or string.pack("<d", back) ~= string.pack("<d", v) then
        lu.fail(string.format("%.17g -> %s -> %s", v, s, tostring(back)))
      end
      -- shortest: one digit fewer (correctly rounded) does not read back
      local digits = #s:gsub("e.*", ""):gsub("[^0-9]", ""):gsub("^0+", ""):gsub("0+$", "")
      if digits > 1 then
        local shorter = string.format("%." .. (digits - 2) .. "e", v)
        lu.assertNotEquals(tonumber(shorter), v, s)
      end
    end
  end
end

function TestJsonNumbers:test_random_integers_round_trip()
  math.randomseed(8)
  for _ = 1, 20000 do
    local v = math.random(math.mininteger, math.maxinteger) >> math.random(0, 63)
    if math.random(2) == 1 then v = -v end
    local back = json.decode(json.encode(v))
    lu.assertEquals(math.type(back), "integer")
    lu.assertEquals(back, v)
  end
end

function TestJsonNumbers:test_numbers_out_of_range_and_special_values()
  lu.assertStrContains(decode_error("1e400"), "json: number out of range at byte 1")
  lu.assertStrContains(decode_error("[-1e999]"), "at byte 2")
  lu.assertEquals(json.decode("1e-400"), 0.0)
  lu.assertEquals(math.type(json.decode("-0")), "integer")
  lu.assertEquals(encode_error(0 / 0), "json: cannot encode NaN at $")
  lu.assertEquals(encode_error({x = {math.huge}}), "json: cannot encode inf at $.x[1]")
  lu.assertEquals(encode_error({-math.huge}), "json: cannot encode -inf at $[1]")
end

TestJsonTables = {}

function TestJsonTables:test_arrays_and_objects()
  lu.assertEquals(json.encode({1, 2, 3}), "[1,2,3]")
  lu.assertEquals(json.encode({"a", {true, false}}), '["a",[true,false]]')
  lu.assertEquals(json.encode({a = 1}), '{"a":1}')
  lu.assertEquals(json.encode({a = {b = {c = "d"}}}), '{"a":{"b":{"c":"d"}}}')
  local o = json.decode(json.encode({x = 1, y = "two", z = {3}}))
  assert_same(o, {x = 1, y = "two", z = {3}}, true)
end

function TestJsonTables:test_array_built_out_of_order()
  local t = {}
  t[3] = "c"
  t[1] = "a"
  t[2] = "b"
  lu.assertEquals(json.encode(t), '["a","b","c"]')
  local big = {}
  for i = 200, 1, -1 do big[i] = i end
  lu.assertEquals(json.decode(json.encode(big))[200], 200)
end

function TestJsonTables:test_refused_tables_name_their_path()
  lu.assertEquals(encode_error({[1] = 1, [3] = 3}), "json: cannot encode a sparse array at $")
  lu.assertEquals(encode_error({a = {1, 2, nil, 4}}), "json: cannot encode a sparse array at $.a")
  lu.assertEquals(encode_error({1, 2, x = 3}), "json: cannot encode a table with mixed keys at $")
  lu.assertEquals(encode_error({a = 1, [2] = 3}), "json: cannot encode a table with mixed keys at $")
  lu.assertEquals(encode_error({[0] = "z"}), "json: cannot encode a sparse array at $")
  lu.assertEquals(encode_error({[-1] = "z"}), "json: cannot encode a sparse array at $")
  lu.assertEquals(encode_error({[1.5] = "z"}), "json: cannot encode a table with a float key at $")
  lu.assertEquals(encode_error({{[true] = 1}}), "json: cannot encode a table with a boolean key at $[1]")
  lu.assertEquals(encode_error({k = {[{}] = 1}}), "json: cannot encode a table with a table key at $.k")
  lu.assertEquals(encode_error(json.array({a = 1})),
                  "json: cannot encode a table with string keys marked as an array at $")
end

function TestJsonTables:test_refused_values_name_their_path()
  local f = function() end
  lu.assertEquals(encode_error({items = {1, 2, {cb = f}}}), "json: cannot encode a function at $.items[3].cb")
  lu.assertEquals(encode_error(f), "json: cannot encode a function at $")
  lu.assertEquals(encode_error({io.stdout}), "json: cannot encode a userdata at $[1]")
  lu.assertEquals(encode_error({co = coroutine.create(f)}), "json: cannot encode a thread at $.co")
  lu.assertEquals(encode_error({["a b"] = {["x.y"] = print}}),
                  'json: cannot encode a function at $["a b"]["x.y"]')
  lu.assertEquals(encode_error({["1st"] = print}), 'json: cannot encode a function at $["1st"]')
end

function TestJsonTables:test_cycles_are_refused()
  local t = {a = {}}
  t.a.back = t
  lu.assertEquals(encode_error(t), "json: cannot encode a reference cycle at $.a.back")
  local arr = {}
  arr[1] = arr
  lu.assertEquals(encode_error(arr), "json: cannot encode a reference cycle at $[1]")
  -- a table shared twice (not a cycle) is fine
  local shared = {1}
  lu.assertEquals(json.encode({shared, shared}), "[[1],[1]]")
end

local function nested(n)
  local root = {}
  local c = root
  for _ = 2, n do
    c[1] = {}
    c = c[1]
  end
  return root
end

function TestJsonTables:test_depth_limit_1000_on_encode()
  lu.assertEquals(#json.encode(nested(1000)), 2000)
  local err = encode_error(nested(1001))
  lu.assertStrContains(err, "json: cannot encode nesting deeper than 1000 at $[1][1]")
end

function TestJsonTables:test_depth_limit_1000_on_decode()
  local ok = string.rep("[", 1000) .. string.rep("]", 1000)
  lu.assertEquals(json.encode(json.decode(ok)), ok)
  lu.assertEquals(decode_error(string.rep("[", 1001) .. string.rep("]", 1001)),
                  "json: nesting deeper than 1000 at byte 1001")
  lu.assertEquals(decode_error(string.rep('{"a":', 1001) .. "1" .. string.rep("}", 1001)),
                  "json: nesting deeper than 1000 at byte 5001")
  -- far deeper input fails the same way, without exhausting anything
  lu.assertStrContains(decode_error(string.rep("[", 100000)), "nesting deeper than 1000")
end

function TestJsonTables:test_duplicate_keys_last_wins()
  lu.assertEquals(json.decode('{"a":1,"a":2}').a, 2)
  lu.assertEquals(json.decode('{"a":{"x":1},"b":0,"a":[3]}').a[1], 3)
end

TestJsonStrings = {}

function TestJsonStrings:test_escapes_on_encode()
  lu.assertEquals(json.encode('"\\\b\f\n\r\t'), [["\"\\\b\f\n\r\t"]])
  lu.assertEquals(json.encode("\0\1\31\127"), '"\\u0000\\u0001\\u001f\127"')
  lu.assertEquals(json.encode("a/b</script>"), '"a/b</script>"')
  lu.assertEquals(json.encode("h\u{e9}llo \u{4e16} \u{1f600}"), '"h\u{e9}llo \u{4e16} \u{1f600}"')
  lu.assertEquals(json.encode({["k\n"] = "v"}), '{"k\\n":"v"}')
end

function TestJsonStrings:test_invalid_utf8_is_refused_on_encode()
  local bad = {"\xff", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc3",
               "ab\xe4\xb8", "\x80"}
  for _, s in ipairs(bad) do
    lu.assertEquals(encode_error({name = s}),
                    "json: cannot encode a string that is not valid UTF-8 at $.name")
  end
  lu.assertEquals(encode_error({[1] = {["k\xff"] = 1}}),
                  'json: cannot encode a string that is not valid UTF-8 at $[1]["k\xff"]')
end

function TestJsonStrings:test_escapes_on_decode()
  lu.assertEquals(json.decode([["\"\\\/\b\f\n\r\t"]]), '"\\/\b\f\n\r\t')
  lu.assertEquals(json.decode([["\u0041\u00e9\u4E16"]]), "A\u{e9}\u{4e16}")
  lu.assertEquals(json.decode([["\ud83d\ude00"]]), "\u{1f600}")
  lu.assertEquals(json.decode([["a\u0000b"]]), "a\0b")
  lu.assertEquals(json.decode('"h\u{e9}llo \u{1f600}"'), "h\u{e9}llo \u{1f600}")
  lu.assertEquals(json.decode('{"\\u0061":1}').a, 1)
end

function TestJsonStrings:test_bad_strings_on_decode()
  lu.assertEquals(decode_error([["\ud800"]]), "json: lone surrogate at byte 2")
  lu.assertEquals(decode_error([["x\udc00"]]), "json: lone surrogate at byte 3")
  lu.assertEquals(decode_error([["\ud800\u0041"]]), "json: lone surrogate at byte 2")
  lu.assertEquals(decode_error([["\x41"]]), "json: invalid escape at byte 2")
  lu.assertEquals(decode_error([["\u12G4"]]), "json: invalid \\u escape at byte 2")
  lu.assertEquals(decode_error('"a\tb"'), "json: control character in string at byte 3")
  lu.assertEquals(decode_error('"a\nb"'), "json: control character in string at byte 3")
  lu.assertEquals(decode_error('"abc'), "json: unterminated string at byte 1")
  lu.assertEquals(decode_error('["ok", "a\xffb"]'), "json: invalid UTF-8 at byte 10")
  lu.assertEquals(decode_error('"\xc0\xaf"'), "json: invalid UTF-8 at byte 2")
  lu.assertEquals(decode_error('"\xed\xa0\x80"'), "json: invalid UTF-8 at byte 2")
  lu.assertEquals(decode_error('"\xf4\x90\x80\x80"'), "json: invalid UTF-8 at byte 2")
  lu.assertEquals(decode_error('"\xe4\xb8"'), "json: invalid UTF-8 at byte 2")
  lu.assertEquals(decode_error('"a\0b"'), "json: control character in string at byte 3")
end

TestJsonDecodeErrors = {}

function TestJsonDecodeErrors:test_strict_rfc8259()
  local cases = {
    {"[1,2,]", "json: trailing comma at byte 5"},
    {'{"a":1,}', "json: trailing comma at byte 7"},
    {"[,1]", "json: unexpected character ',' at byte 2"},
    {"[1 2]", "json: ',' or ']' expected at byte 4"},
    {'{"a":1 "b":2}', "json: ',' or '}' expected at byte 8"},
    {'{"a" 1}', "json: ':' expected at byte 6"},
    {"{a:1}", "json: string key expected at byte 2"},
    {"{'a':1}", "json: string key expected at byte 2"},
    {"['a']", "json: unexpected character ''' at byte 2"},
    {"// c\n1", "json: comments are not JSON at byte 1"},
    {"[1 /* c */]", "json: comments are not JSON at byte 4"},
    {"01", "json: leading zero at byte 1"},
    {"-012", "json: leading zero at byte 2"},
    {"[00]", "json: leading zero at byte 2"},
    {"1 2", "json: trailing garbage at byte 3"},
    {"{} x", "json: trailing garbage at byte 4"},
    {"nulll", "json: trailing garbage at byte 5"},
    {"", "json: unexpected end of input at byte 1"},
    {"   ", "json: unexpected end of input at byte 4"},
    {"[1,", "json: unexpected end of input at byte 4"},
    {"[1", "json: unterminated array at byte 1"},
    {'{"a":1', "json: unterminated object at byte 1"},
    {"+1", "json: unexpected character '+' at byte 1"},
    {".5", "json: unexpected character '.' at byte 1"},
    {"1.", "json: digit expected after '.' at byte 3"},
    {"1.e5", "json: digit expected after '.' at byte 3"},
    {"1e", "json: digit expected in exponent at byte 3"},
    {"1e+", "json: digit expected in exponent at byte 4"},
    {"-", "json: unexpected end of input at byte 2"},
    {"-x", "json: unexpected character 'x' at byte 2"},
    {"0x10", "json: trailing garbage at byte 2"},
    {"NaN", "json: unexpected character 'N' at byte 1"},
    {"Infinity", "json: unexpected character 'I' at byte 1"},
    {"-Infinity", "json: unexpected character 'I' at byte 2"},
    {"tru", "json: unexpected character 't' at byte 1"},
    {"True", "json: unexpected character 'T' at byte 1"},
    {"\xef\xbb\xbf1", "json: unexpected byte 0xef at byte 1"},
    {"[1]\0", "json: trailing garbage at byte 4"},
    {"\f1", "json: unexpected byte 0x0c at byte 1"},
  }
  for _, c in ipairs(cases) do
    lu.assertEquals(decode_error(c[1]), c[2], c[1])
  end
end

function TestJsonDecodeErrors:test_valid_edge_documents()
  lu.assertEquals(json.decode(' \t\r\n[ 1 , { "a" : [ ] } ] \n')[1], 1)
  lu.assertEquals(json.decode('"x"'), "x")
  lu.assertEquals(json.decode("true"), true)
  lu.assertEquals(json.decode("false"), false)
  lu.assertEquals(json.decode("-0.5e-1"), -0.05)
  lu.assertEquals(json.decode('""'), "")
  lu.assertEquals(json.decode("{}")["x"], nil)
  lu.assertEquals(json.decode('{"":1}')[""], 1)
end

TestJsonEncodeOptions = {}

function TestJsonEncodeOptions:test_indent()
  local v = {a = {1, {b = json.empty_array}, {}}}
  lu.assertEquals(json.encode(v, {indent = 2}),
                  '{\n  "a": [\n    1,\n    {\n      "b": []\n    },\n    {}\n  ]\n}')
  lu.assertEquals(json.encode({1, 2}, {indent = 4}), "[\n    1,\n    2\n]")
  lu.assertEquals(json.encode({1, 2}, {indent = 0}), "[1,2]")
  lu.assertEquals(json.encode("s", {indent = 2}), '"s"')
  assert_same(json.decode(json.encode(v, {indent = 3})), v, true)
end

function TestJsonEncodeOptions:test_sort_keys()
  local v = {b = 1, a = {z = 1, y = 2, [""] = 0}, B = true, ["a\0"] = 3, aa = 4}
  lu.assertEquals(json.encode(v, {sort_keys = true}),
                  '{"B":true,"a":{"":0,"y":2,"z":1},"a\\u0000":3,"aa":4,"b":1}')
  lu.assertEquals(json.encode({c = 1, a = 2, b = 3}, {sort_keys = true, indent = 1}),
                  '{\n "a": 2,\n "b": 3,\n "c": 1\n}')
  local many = {}
  for i = 1, 100 do many[string.format("k%03d", 101 - i)] = i end
  local s = json.encode(many, {sort_keys = true})
  lu.assertEquals(s:sub(1, 18), '{"k001":100,"k002"')
  lu.assertEquals(encode_error({a = 1, [3] = 2}, {sort_keys = true}),
                  "json: cannot encode a table with mixed keys at $")
  lu.assertEquals(encode_error({x = {a = print}}, {sort_keys = true}),
                  "json: cannot encode a function at $.x.a")
end

TestJsonMemory = {}

-- The test state's memory_limit is 8 MiB (tests/lua/app/app.lua).
function TestJsonMemory:test_encode_over_the_limit_fails_and_the_state_goes_on()
  local big = string.rep("x", 1024 * 1024)
  local t = {}
  for i = 1, 16 do t[i] = big end
  local ok, err = pcall(json.encode, t)
  lu.assertFalse(ok)
  lu.assertStrContains(tostring(err), "not enough memory")
  collectgarbage()
  lu.assertEquals(json.encode({1, "two"}), '[1,"two"]')
end

function TestJsonMemory:test_decode_over_the_limit_fails_and_the_state_goes_on()
  local text = "[" .. string.rep("[],", 400000) .. "[]]"   -- 1.2 MB of text, 400k tables
  local ok, err = pcall(json.decode, text)
  lu.assertFalse(ok)
  lu.assertStrContains(tostring(err), "not enough memory")
  text = nil
  collectgarbage()
  lu.assertEquals(json.decode("[1,2]")[2], 2)
end

-- Random values: decode(encode(v)) equals v, subtypes included.
local function random_string(r)
  local parts = {}
  for i = 1, r(12) - 1 do
    local k = r(10)
    if k <= 6 then parts[i] = string.char(32 + r(95) - 1)
    elseif k == 7 then parts[i] = string.char(r(32) - 1)
    elseif k == 8 then parts[i] = utf8.char(0x80 + r(0x700))
    elseif k == 9 then parts[i] = utf8.char(0x800 + r(0xd000))
    else parts[i] = utf8.char(0x10000 + r(0xfffff)) end
  end
  return table.concat(parts)
end

local function random_value(r, depth, cjson_safe)
  local k = r(depth > 4 and 6 or 9)
  if k == 1 then return json.null
  elseif k == 2 then return r(2) == 1
  elseif k == 3 then
    if cjson_safe then return r(2000000) - 1000000 end
    return math.random(math.mininteger, math.maxinteger) >> r(64) - 1
  elseif k == 4 then
    if cjson_safe then return (r(4000) - 2000) / 8 end
    local v = string.unpack("<d", string.pack("<i8", math.random(math.mininteger, math.maxinteger)))
    if v ~= v or v == math.huge or v == -math.huge then return 0.5 end
    return v
  elseif k == 5 or k == 6 then return random_string(r)
  elseif k == 7 then
    local t = {}
    for i = 1, r(6) - 1 do t[i] = random_value(r, depth + 1, cjson_safe) end
    return cjson_safe and t or json.array(t)
  else
    local t = {}
    for _ = 1, r(6) do t[random_string(r)] = random_value(r, depth + 1, cjson_safe) end
    return t
  end
end

TestJsonRoundTrip = {}

function TestJsonRoundTrip:test_random_values_round_trip_with_subtypes()
  math.randomseed(11)
  local r = math.random
  for _ = 1, 3000 do
    local v = random_value(r, 0, false)
    local text = json.encode(v)
    assert_same(json.decode(text), v, true)
    assert_same(json.decode(json.encode(v, {indent = 2, sort_keys = true})), v, true)
  end
end

TestJsonCjson = {}

function TestJsonCjson:test_cjson_is_loaded()
  lu.assertNotNil(cjson, "lua-cjson (Debian package lua-cjson) is needed for this suite")
  lu.assertEquals(cjson.null, json.null)
end

-- Documents on which lua-cjson 2.1 is correct: both decode them alike
-- (cjson gives every number as a float, so numbers compare by value).
local DOCS = {
  '{"a":1,"b":[true,false,null],"c":"x\\"y\\\\z\\/w\\n","d":{"e":[]}}',
  '[1,-2,3.5,-0.25,1e3,2E-2,1234567890123,0,-0]',
  '"\\u00e9\\u4e16\\ud83d\\ude00 plain \u{e9}"',
  '[[[[[[["deep"]]]]]]]',
  '{"dup":1,"dup":2}',
  '  {"spaces" : [ 1 , 2 ] }  ',
  '[0.1,0.2,0.30000000000000004,1.7976931348623157e308,5e-324,123456.789]',
  '{"nested":{"objects":{"and":{"arrays":[{"x":1},{"y":[2,3]}]}}}}',
}

function TestJsonCjson:test_both_decode_alike()
  for _, d in ipairs(DOCS) do
    assert_same(json.decode(d), cjson.decode(d), false)
  end
end

function TestJsonCjson:test_cjson_reads_what_json_writes()
  math.randomseed(12)
  local r = math.random
  for _ = 1, 2000 do
    local v = random_value(r, 0, true)
    assert_same(cjson.decode(json.encode(v)), v, false)
    assert_same(json.decode(cjson.encode(v)), v, false)
    assert_same(json.decode(json.encode(v)), v, true)
  end
end

function TestJsonCjson:test_both_refuse_what_cjson_refuses()
  for _, bad in ipairs {"[1,2", '{"a"}', "[1,,2]", "{1:2}", "tru", '"abc'} do
    lu.assertFalse(pcall(cjson.decode, bad), bad)
    lu.assertFalse(pcall(json.decode, bad), bad)
  end
end
