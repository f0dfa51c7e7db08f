#!/bin/bash
# users.sh - run once by the mariadb image on an empty data dir
# (/docker-entrypoint-initdb.d): orderq's two users with the rights of
# docs/operations.md#users-and-rights-least-privilege.
set -euo pipefail
mariadb -uroot -p"$MARIADB_ROOT_PASSWORD" <<SQL
CREATE DATABASE IF NOT EXISTS orderq CHARACTER SET utf8mb4;
CREATE USER 'orderq'@'%' IDENTIFIED BY '${OQ_DB_PASSWORD}';
GRANT SELECT, INSERT, UPDATE, DELETE ON orderq.* TO 'orderq'@'%';
CREATE USER 'orderq_migrate'@'%' IDENTIFIED BY '${OQ_DB_MIGRATE_PASSWORD}';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, REFERENCES ON orderq.* TO 'orderq_migrate'@'%';
SQL
