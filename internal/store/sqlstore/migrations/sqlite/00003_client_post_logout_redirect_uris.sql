-- Version 3 (SQLite): the addresses RP-initiated logout may send the browser back to, a list
-- of their own (JSON array) apart from the sign-in redirect_uris. 'null' is no list: clients
-- stored before it have none, so logout shows the signed-out page until some are registered.

-- +goose Up
ALTER TABLE clients ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT 'null';
