-- Prosody 0.12 configuration for a Jitsi Meet site gated by keyfocus.
-- Merge into /etc/prosody/conf.d/<your domain>.cfg.lua; replace meet.example
-- with your domain. keyfocus's own settings: /etc/keyfocus (see
-- docs/operations.md).

-- Global section -----------------------------------------------------------
-- The component port: loopback only. keyfocus runs on the same host.
component_ports = { 5347 }
component_interfaces = { "127.0.0.1" }
-- Without this Prosody delays small stanzas (~45 ms stalls under load).
network_settings = { nagle = false }

-- Guests log in anonymously; keyfocus does the gating.
VirtualHost "meet.example"
    authentication = "anonymous"
    -- Your TLS certificate here; without one, c2s_require_encryption = false.

-- The MUC where conferences happen: only keyfocus may create rooms, and it
-- makes every room members-only, so nobody it did not admit can enter.
Component "conference.meet.example" "muc"
    restrict_room_creation = true
    admins = { "focus.meet.example" }
    muc_room_locking = false
    muc_room_default_public_jids = true
    -- Rooms kept in memory before Prosody swaps them to storage (default
    -- 100). Past it, every room keyfocus creates costs ~2.5x more: set it
    -- well above the number of rooms you expect at once.
    muc_room_cache_size = 1000
    -- Prosody 13 also needs:
    -- component_admins_as_room_owners = true

-- keyfocus connects here as an external component (XEP-0114). Put the same
-- secret in /etc/keyfocus/component-secret (0640 root:keyfocus).
Component "focus.meet.example"
    component_secret = "CHANGE-ME: a long random string, e.g. from: openssl rand -hex 32"

-- Jitsi Meet's config.js must point at keyfocus as its focus:
--   hosts: { domain: 'meet.example', muc: 'conference.meet.example', focus: 'focus.meet.example' }
-- Stop Jicofo (it would claim the same focus address): systemctl disable --now jicofo
