file(REMOVE_RECURSE
  "libllhttp.a"
)
