-- Argo CD health check for keyward.dev/KeyVersion (Lua 5.1, as Argo CD runs it).
-- Healthy once the version was created; Degraded when the request was refused (final, like a
-- failed CreateKeyVersion call: create a new KeyVersion to ask again); Progressing while it
-- waits for its Key or for keyward.
local hs = {}
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then
      if condition.status == "True" then
        hs.status = "Healthy"
      elseif string.sub(condition.reason or "", 1, 8) == "Rejected" then
        hs.status = "Degraded"
      else
        hs.status = "Progressing"
      end
      hs.message = condition.message
      return hs
    end
  end
end
hs.status = "Progressing"
hs.message = "Waiting for keyward to process the request"
return hs
