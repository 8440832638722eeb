CMakeFiles/luahost_core.dir/embedded.c.o: /work/main/build/embedded.c \
 /usr/include/stdc-predef.h \
 /usr/lib/gcc/x86_64-linux-gnu/12/include/stddef.h \
 /work/main/host/embedded.h
