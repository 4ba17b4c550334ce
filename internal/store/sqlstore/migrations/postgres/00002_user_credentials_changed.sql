-- Version 2 (PostgreSQL): when a user's credentials last changed (password, second factor)
-- or the user was disabled. Sessions and refresh-token families signed in before it stop
-- working. NULL is the zero time: never changed.

-- +goose Up
ALTER TABLE users ADD COLUMN credentials_changed_at BIGINT;
