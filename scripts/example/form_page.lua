-- GET /form : an HTML page with a note form and an upload form.
local page = [[
<!doctype html>
<html><head><meta charset="utf-8"><title>luahost example</title></head>
<body>
<h1>Notes</h1>
<form method="post" action="/notes">
  <input name="text" placeholder="a note"> <button>Add</button>
</form>
<h1>Upload</h1>
<form method="post" action="/upload" enctype="multipart/form-data">
  <input name="comment" placeholder="comment">
  <input type="file" name="files" multiple> <button>Upload</button>
</form>
<p><a href="/notes">all notes</a> &middot; <a href="/prefs">preferences</a></p>
</body></html>
]]

return function(req)
  return 200, { ["content-type"] = "text/html; charset=utf-8" }, page
end
