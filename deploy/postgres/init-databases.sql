-- One database per service, owned by the application role (POSTGRES_USER).
-- Runs once, when the postgres volume is first initialised.
CREATE DATABASE registry;
CREATE DATABASE dispatch;
CREATE DATABASE points;
CREATE DATABASE reporting;
