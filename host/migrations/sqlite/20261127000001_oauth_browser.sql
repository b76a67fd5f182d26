-- An authorization started from a browser is bound to it: the SHA-256 of a
-- random value kept in an HttpOnly cookie, which the callback must present.
-- NULL: started by an API client that asked for no binding.
ALTER TABLE oauth_states ADD COLUMN browser_hash TEXT;
