-- Argo CD health of a fastship.dev AppConfig (resource.customizations.health.fastship.dev_AppConfig).
-- Healthy when the settings are valid and the Deployment runs them; Degraded when they are
-- invalid (the last valid configuration stays in place) or cannot be applied; Progressing
-- while the operator has not caught up or the Deployment does not exist yet.
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
local valid = conditions["Valid"]
local applied = conditions["Applied"]
if valid ~= nil and valid.status == "False" then
  hs.status = "Degraded"
  hs.message = "Invalid settings: " .. (valid.message or "")
  return hs
end
if applied ~= nil and applied.status == "False" then
  if applied.reason == "DeploymentNotFound" then
    hs.message = applied.message or "Waiting for the Deployment"
  else
    hs.status = "Degraded"
    hs.message = (applied.reason or "NotApplied") .. ": " .. (applied.message or "")
  end
  return hs
end
if valid ~= nil and valid.status == "True" and applied ~= nil and applied.status == "True" then
  hs.status = "Healthy"
  hs.message = applied.message or "Applied"
  return hs
end
hs.message = "Validating and applying the settings"
return hs
