-- The engine's own database beside Temporal's, on the same PostgreSQL.
CREATE USER engine WITH PASSWORD 'engine';
CREATE DATABASE engine OWNER engine;
