-- Which instance answered (no Redis involved).
return function(req)
  return 200, { ["content-type"] = "text/plain" },
    ("hello from %s\n"):format(os.getenv("LUAHOST_INSTANCE") or "?")
end
