-- PostgreSQL's 0007 adds a trigger that notifies replicas of connection changes (LISTEN/NOTIFY).
-- SQLite is one node's file: other processes on it (the CLI) are picked up by polling. Nothing
-- to change; this keeps the two migration sets numbered alike.
SELECT 1;
