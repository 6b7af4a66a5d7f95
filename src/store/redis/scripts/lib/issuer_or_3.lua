-- Refuses the token write ({3, 0}) when the issuer check fails
-- (lib/issuer.lua).
if not issuer_ok() then return {3, 0} end
