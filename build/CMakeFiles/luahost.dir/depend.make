# Empty dependencies file for luahost.
# This may be replaced when dependencies are built.
