-- dead_letter: what could not succeed, archived from the dead-letter queue
-- by `orderq consume` so that a person can search it (`orderq dlq list`),
-- see why (`show`), send it back once the cause is fixed (`replay`) and
-- clear it (`purge`). The body is kept byte for byte.
CREATE TABLE IF NOT EXISTS dead_letter (
  id                BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  letter_key        CHAR(64) CHARACTER SET ascii NOT NULL
                    COMMENT 'SHA-256 of properties and body: the same letter delivered twice is one row',
  queue             VARCHAR(255) NOT NULL DEFAULT '' COMMENT 'the work queue it failed in',
  exchange_name     VARCHAR(255) NOT NULL DEFAULT '' COMMENT 'where it was first published',
  routing_key       VARCHAR(255) NOT NULL DEFAULT '',
  event_code        VARCHAR(191) NOT NULL DEFAULT '' COMMENT 'the type property',
  event_identifier  VARCHAR(191) NOT NULL DEFAULT '' COMMENT 'the message_id property',
  properties        JSON         NOT NULL COMMENT 'AMQP properties but headers',
  headers           JSON         NOT NULL COMMENT 'AMQP headers, orderq''s x-orderq-* among them',
  body              LONGBLOB     NOT NULL,
  body_size         BIGINT UNSIGNED NOT NULL,
  error_class       VARCHAR(32)  CHARACTER SET ascii NOT NULL DEFAULT '',
  error             VARCHAR(1024) NOT NULL DEFAULT '',
  fingerprint       VARCHAR(255) NOT NULL DEFAULT '' COMMENT 'error class and normalised error: one problem, one fingerprint',
  attempts          INT UNSIGNED NOT NULL DEFAULT 1,
  first_failed_at   DATETIME(6)  NULL,
  last_failed_at    DATETIME(6)  NULL,
  dead_at           DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) COMMENT 'archived',
  dead_host         VARCHAR(255) NOT NULL DEFAULT '',
  dead_pid          INT UNSIGNED NULL,
  replay_count      INT UNSIGNED NOT NULL DEFAULT 0,
  replayed_at       DATETIME(6)  NULL,
  replayed_by       VARCHAR(191) NOT NULL DEFAULT '',
  PRIMARY KEY (id),
  UNIQUE KEY uq_dead_letter_key (letter_key),
  KEY idx_dead_letter_dead_at (dead_at),
  KEY idx_dead_letter_fingerprint (fingerprint, dead_at),
  KEY idx_dead_letter_queue (queue, dead_at),
  KEY idx_dead_letter_event (event_identifier),
  KEY idx_dead_letter_code (event_code, dead_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
  COMMENT='orderq dead letters: search, replay, purge';
