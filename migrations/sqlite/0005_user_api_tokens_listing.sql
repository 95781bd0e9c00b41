-- The admin listing of every user API token (`GET /admin/v1/api-tokens`) walks the table newest
-- first by (created_at, id), a page at a time: an index in that order lets each page be a range
-- scan instead of a sort of the whole table. SQLite dialect.
-- Keep equivalent to ../postgres/0005_user_api_tokens_listing.sql.
CREATE INDEX user_api_tokens_created_idx ON user_api_tokens (created_at, id);
