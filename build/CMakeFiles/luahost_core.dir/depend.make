# Empty dependencies file for luahost_core.
# This may be replaced when dependencies are built.
