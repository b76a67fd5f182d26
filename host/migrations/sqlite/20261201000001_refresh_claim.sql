-- Until when one process (of several sharing the database) has claimed the
-- right to spend the stored refresh token; NULL: nobody is refreshing.
ALTER TABLE integrations ADD COLUMN refresh_claimed_until INTEGER;
