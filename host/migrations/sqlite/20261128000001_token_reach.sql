-- What a credential reaches and what kind it is (JSON of the connector's
-- answer), the part of the provider a connection is limited to (JSON of
-- one reach item; NULL: all the credential reaches), the expiry an
-- `integration.expiring` event was sent for (once per expiry), and when a
-- rotation started that has not stored its new credential yet.
ALTER TABLE integrations ADD COLUMN reach_json TEXT;
ALTER TABLE integrations ADD COLUMN scope_json TEXT;
ALTER TABLE integrations ADD COLUMN expiry_notified_for TEXT;
ALTER TABLE integrations ADD COLUMN rotation_started_at TEXT;
