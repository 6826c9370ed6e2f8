-- Argo CD health of a fastship.dev Migration (resource.customizations.health.fastship.dev_Migration).
-- Healthy once the operator's Job migrated the database for the current spec; Degraded
-- when it failed or is stuck (Stalled); Progressing while it waits or runs.
local hs = {status = "Progressing", message = "Waiting for the fastship operator"}
if obj.status == nil then
  return hs
end
local generation = obj.metadata.generation or 0
if (obj.status.observedGeneration or 0) < generation then
  hs.message = "The operator has not seen generation " .. generation .. " yet"
  return hs
end
local conditions = {}
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    conditions[c.type] = c
  end
end
local ready = conditions["Ready"]
local stalled = conditions["Stalled"]
local function say(condition, fallback)
  if condition ~= nil and condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  return obj.status.message or fallback
end
local phase = obj.status.phase
if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = say(stalled or ready, "The migration failed")
elseif stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = (stalled.reason or "Stalled") .. ": " .. say(stalled, "the migration is stuck")
elseif phase == "Succeeded" and ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = say(ready, "Migrated")
elseif phase == "Running" then
  hs.message = say(ready, "Migrating")
else
  hs.message = say(ready, "Waiting for the migration Job")
end
return hs
