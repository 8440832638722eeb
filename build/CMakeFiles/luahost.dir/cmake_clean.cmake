file(REMOVE_RECURSE
  "CMakeFiles/luahost.dir/host/main.c.o"
  "CMakeFiles/luahost.dir/host/main.c.o.d"
  "luahost"
  "luahost.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/luahost.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
