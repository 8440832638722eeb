
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/bindings/apptest.c" "CMakeFiles/luahost_core.dir/bindings/apptest.c.o" "gcc" "CMakeFiles/luahost_core.dir/bindings/apptest.c.o.d"
  "/work/main/bindings/runtime.c" "CMakeFiles/luahost_core.dir/bindings/runtime.c.o" "gcc" "CMakeFiles/luahost_core.dir/bindings/runtime.c.o.d"
  "/work/main/build/embedded.c" "CMakeFiles/luahost_core.dir/embedded.c.o" "gcc" "CMakeFiles/luahost_core.dir/embedded.c.o.d"
  "/work/main/host/app.c" "CMakeFiles/luahost_core.dir/host/app.c.o" "gcc" "CMakeFiles/luahost_core.dir/host/app.c.o.d"
  "/work/main/host/base/clock.c" "CMakeFiles/luahost_core.dir/host/base/clock.c.o" "gcc" "CMakeFiles/luahost_core.dir/host/base/clock.c.o.d"
  "/work/main/host/base/instance.c" "CMakeFiles/luahost_core.dir/host/base/instance.c.o" "gcc" "CMakeFiles/luahost_core.dir/host/base/instance.c.o.d"
  "/work/main/host/base/log.c" "CMakeFiles/luahost_core.dir/host/base/log.c.o" "gcc" "CMakeFiles/luahost_core.dir/host/base/log.c.o.d"
  "/work/main/host/base/size.c" "CMakeFiles/luahost_core.dir/host/base/size.c.o" "gcc" "CMakeFiles/luahost_core.dir/host/base/size.c.o.d"
  "/work/main/host/config.c" "CMakeFiles/luahost_core.dir/host/config.c.o" "gcc" "CMakeFiles/luahost_core.dir/host/config.c.o.d"
  "/work/main/host/dispatch.c" "CMakeFiles/luahost_core.dir/host/dispatch.c.o" "gcc" "CMakeFiles/luahost_core.dir/host/dispatch.c.o.d"
  "/work/main/host/http/conn.c" "CMakeFiles/luahost_core.dir/host/http/conn.c.o" "gcc" "CMakeFiles/luahost_core.dir/host/http/conn.c.o.d"
  "/work/main/host/http/listener.c" "CMakeFiles/luahost_core.dir/host/http/listener.c.o" "gcc" "CMakeFiles/luahost_core.dir/host/http/listener.c.o.d"
  "/work/main/host/http/response.c" "CMakeFiles/luahost_core.dir/host/http/response.c.o" "gcc" "CMakeFiles/luahost_core.dir/host/http/response.c.o.d"
  "/work/main/host/http/static.c" "CMakeFiles/luahost_core.dir/host/http/static.c.o" "gcc" "CMakeFiles/luahost_core.dir/host/http/static.c.o.d"
  "/work/main/host/http/url.c" "CMakeFiles/luahost_core.dir/host/http/url.c.o" "gcc" "CMakeFiles/luahost_core.dir/host/http/url.c.o.d"
  "/work/main/host/server.c" "CMakeFiles/luahost_core.dir/host/server.c.o" "gcc" "CMakeFiles/luahost_core.dir/host/server.c.o.d"
  "/work/main/host/vm/call.c" "CMakeFiles/luahost_core.dir/host/vm/call.c.o" "gcc" "CMakeFiles/luahost_core.dir/host/vm/call.c.o.d"
  "/work/main/host/vm/errors.c" "CMakeFiles/luahost_core.dir/host/vm/errors.c.o" "gcc" "CMakeFiles/luahost_core.dir/host/vm/errors.c.o.d"
  "/work/main/host/vm/state.c" "CMakeFiles/luahost_core.dir/host/vm/state.c.o" "gcc" "CMakeFiles/luahost_core.dir/host/vm/state.c.o.d"
  "/work/main/host/worker.c" "CMakeFiles/luahost_core.dir/host/worker.c.o" "gcc" "CMakeFiles/luahost_core.dir/host/worker.c.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  "/work/main/build/CMakeFiles/llhttp.dir/DependInfo.cmake"
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
