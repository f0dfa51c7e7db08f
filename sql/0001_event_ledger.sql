-- event_ledger: one row per effect done (or under way). The primary key is
-- the only arbiter of "already done": a claim is an INSERT, never a
-- read-then-write, so any number of consumers on any number of hosts is safe.
CREATE TABLE IF NOT EXISTS event_ledger (
  handler          VARCHAR(64)  CHARACTER SET ascii NOT NULL
                   COMMENT 'handler name, e.g. coupon_rules, invoice_email',
  effect_key       VARCHAR(191) NOT NULL
                   COMMENT 'event_identifier, or a business key such as invoice:501',
  event_identifier VARCHAR(191) NOT NULL COMMENT 'the event that claimed the effect',
  event_code       VARCHAR(191) NOT NULL,
  state            ENUM('done','sending','sent','unknown','failed') NOT NULL DEFAULT 'done'
                   COMMENT 'done: DB effect committed; sending (leased) -> sent | unknown for SMTP/HTTP',
  attempts         INT UNSIGNED NOT NULL DEFAULT 1,
  owner            VARCHAR(191) NOT NULL DEFAULT '' COMMENT 'instance id (host:pid) of the claimer',
  lease_until      DATETIME(6)  NULL COMMENT 'a sending claim is live until then',
  result           VARCHAR(1024) NOT NULL DEFAULT '' COMMENT 'outcome text, like coupon_queue.execute_result',
  created_at       DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  executed_at      DATETIME(6)  NULL,
  PRIMARY KEY (handler, effect_key),
  KEY idx_event_ledger_event (event_identifier),
  KEY idx_event_ledger_created (created_at),
  KEY idx_event_ledger_state_lease (state, lease_until)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
  COMMENT='orderq dedup ledger: exactly-once effects';
