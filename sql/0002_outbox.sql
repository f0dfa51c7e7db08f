-- outbox: follow-up events written in the same transaction as the effect
-- that causes them; the relay publishes them with confirms and stamps
-- published_at. A relay crash republishes at worst, and the next consumer's
-- ledger drops the duplicate.
CREATE TABLE IF NOT EXISTS outbox (
  id               BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  event_code       VARCHAR(191) NOT NULL,
  event_identifier VARCHAR(191) NOT NULL,
  exchange_name    VARCHAR(255) NOT NULL COMMENT 'empty: the configured shop exchange',
  routing_key      VARCHAR(255) NOT NULL,
  body             MEDIUMBLOB   NOT NULL COMMENT 'the event envelope, JSON',
  headers          JSON         NULL,
  created_at       DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  published_at     DATETIME(6)  NULL,
  publish_attempts INT UNSIGNED NOT NULL DEFAULT 0,
  last_error       VARCHAR(1024) NOT NULL DEFAULT '',
  PRIMARY KEY (id),
  UNIQUE KEY uq_outbox_event (event_identifier, event_code),
  KEY idx_outbox_pending (published_at, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
  COMMENT='orderq transactional outbox';
