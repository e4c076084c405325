-- Argo CD health check for keyward.dev/Key (Lua 5.1, as Argo CD runs it).
-- Healthy once the key is Ready for the current spec; Suspended while an EXTERNAL key waits
-- for its material to be imported; Degraded when keyward refused the spec (the message says
-- what to change); Progressing until keyward has looked at the current generation.
local hs = {}
local generation = obj.metadata.generation
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for keyward to reconcile the key"
  return hs
end
if generation ~= nil and obj.status.observedGeneration ~= nil and obj.status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for keyward to observe the latest spec"
  return hs
end
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    if generation ~= nil and condition.observedGeneration ~= nil and condition.observedGeneration < generation then
      hs.status = "Progressing"
      hs.message = "Waiting for keyward to observe the latest spec"
    elseif condition.status == "True" then
      hs.status = "Healthy"
      hs.message = condition.message
    elseif condition.reason == "PendingImport" then
      hs.status = "Suspended"
      hs.message = condition.message
    else
      hs.status = "Degraded"
      hs.message = condition.message
    end
    return hs
  end
end
hs.status = "Progressing"
hs.message = "Waiting for keyward to report readiness"
return hs
