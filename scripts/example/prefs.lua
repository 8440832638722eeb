-- GET /prefs : the theme from the `theme` cookie (req.cookies).
-- POST /prefs theme=dark : sets two cookies (an array value gives one
-- Set-Cookie line each) and redirects back with 303.
return function(req)
  if req.method == "POST" then
    local theme = req.form.theme
    if theme ~= "light" and theme ~= "dark" then
      return 400, "theme must be light or dark\n"
    end
    return 303, {
      location = "/prefs",
      ["set-cookie"] = { "theme=" .. theme .. "; Path=/; SameSite=Lax",
                         "seen=1; Path=/; Max-Age=86400" },
    }, ""
  end
  return "theme: " .. (req.cookies.theme or "light") .. "\n"
end
