# embed_scripts(OUT FILES): writes OUT, a C file with one entry per Lua file
# in `embedded_scripts[]` ({name, text, len}); the name is the file's base
# name without ".lua".  Regenerated when a script changes.
function(embed_scripts out files)
  string(REPLACE ";" "," joined "${files}")   # a list would split the command
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} "-DFILES=${joined}"
            -P ${CMAKE_SOURCE_DIR}/cmake/embed_run.cmake
    DEPENDS ${files} ${CMAKE_SOURCE_DIR}/cmake/embed_run.cmake
    COMMENT "Embedding Lua scripts" VERBATIM)
endfunction()
