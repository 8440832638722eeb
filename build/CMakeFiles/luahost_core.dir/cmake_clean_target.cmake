file(REMOVE_RECURSE
  "libluahost_core.a"
)
