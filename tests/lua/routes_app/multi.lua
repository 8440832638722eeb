-- repeated headers from arrays, with a bad item among them
return function(req)
  return 200, {
    ["set-cookie"] = { "a=1; Path=/", "b=2" },
    ["x-list"] = { "one", "two\r\nInjected: yes", 3 },
    ["x-single"] = "only",
    ["x-empty"] = {},
  }, "multi"
end
