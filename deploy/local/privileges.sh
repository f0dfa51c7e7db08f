# shellcheck shell=bash
# deploy/local/privileges.sh - the rights orderq's users get, in one place.
# The local stack (deploy/local/lib.sh) and the system tests
# (tests/system/lib.sh) grant exactly these; docs/operations.md lists the
# same for a production setup. Sourced, not run; sets variables only.
# shellcheck disable=SC2034 # used by the scripts that source this

# MySQL, on orderq's database only (`db`.*).
# The consumer and every command but migrate: rows, never the schema.
# SHOW WARNINGS, GET_LOCK and SET SESSION need no privilege.
OQ_MYSQL_CONSUMER_GRANTS="SELECT, INSERT, UPDATE, DELETE"
# `orderq migrate`: creates and alters tables (indexes and the dead_letter
# foreign key with them) and records each migration in schema_migrations.
OQ_MYSQL_MIGRATE_GRANTS="SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, REFERENCES"

# RabbitMQ, per vhost: configure / write / read regular expressions over
# exchange and queue names, for the default names (shop_exchange
# shop.events, queue_prefix, delay_exchange and dead_exchange orderq.*).
# The default exchange "" is checked as amq.default.
#
# orderq declares its queues and exchanges (configure), binds them and
# publishes retries, dead letters, relayed events and replays (write; the
# default exchange because the delay tier queues dead-letter into it, which
# RabbitMQ checks as write on amq.default when they are declared, and a
# replay with --to-queue publishes through it), consumes its
# queues and binds from the shop exchange (read). configure on shop.events
# only because the local stack and the tests let orderq create the shop's
# exchange (topology declare --create-shop-exchange); in production the shop
# owns it and orderq checks it passively, which needs no right.
OQ_AMQP_ORDERQ_CONFIGURE='^(orderq\..*|shop\.events)$'
OQ_AMQP_ORDERQ_CONFIGURE_OWN='^orderq\..*$' # production: the shop's exchange is the shop's
OQ_AMQP_ORDERQ_WRITE='^(orderq\..*|shop\.events|amq\.default)$'
OQ_AMQP_ORDERQ_READ='^(orderq\..*|shop\.events)$'
# User tags: `management` lets `orderq topology verify` read the management
# API, and only for the vhosts the user has permissions in. Without it,
# give amqp_mgmt_url a user of its own.
OQ_AMQP_ORDERQ_TAGS='management'
# The shop publishes its events to its exchange and nothing else: not the
# default exchange, not orderq's delay or dead exchanges (x-orderq-* headers
# must come from orderq).
OQ_AMQP_SHOP_CONFIGURE='^$'
OQ_AMQP_SHOP_WRITE='^shop\.events$'
OQ_AMQP_SHOP_READ='^$'
OQ_AMQP_SHOP_TAGS=''
