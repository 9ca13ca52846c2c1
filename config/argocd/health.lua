-- Argo CD health check for every nameplane kind (DNSServer, DNSZone, StubDomain,
-- RewriteRule, DNSPolicy). It reads the kstatus conditions the operator writes, so it agrees
-- with kstatus (Flux `wait: true`, cli-utils):
--
--   metadata.deletionTimestamp set                -> Progressing (kstatus Terminating)
--   no status, or status.observedGeneration behind
--   metadata.generation                           -> Progressing (kstatus InProgress)
--   Stalled=True                                  -> Degraded    (kstatus Failed)
--   Reconciling=True                              -> Progressing (kstatus InProgress)
--   Ready=True                                    -> Healthy     (kstatus Current)
--   Ready=False, nothing else True                -> Degraded    (the operator never writes
--                                                    this; kstatus would say Current)
--
-- Install it in argocd-cm once per kind as
--   resource.customizations.health.nameplane.io_<Kind>
-- (see README.md, "GitOps health"). Tested by operator/tests/argocd_health.rs with lua5.4.
local hs = {}

local function condition(type)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function say(c)
  local message = c.reason or ""
  if c.message ~= nil and c.message ~= "" then
    message = message .. ": " .. c.message
  end
  return message
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "being deleted"
  return hs
end

if obj.status == nil or obj.status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the nameplane operator to report status"
  return hs
end

if obj.metadata ~= nil and obj.metadata.generation ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "the operator has not yet observed generation " .. tostring(obj.metadata.generation)
  return hs
end

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = say(stalled)
  return hs
end

local reconciling = condition("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = say(reconciling)
  return hs
end

local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = say(ready)
  return hs
end
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = say(ready)
  return hs
end

hs.status = "Progressing"
hs.message = "waiting for the Ready condition"
return hs
