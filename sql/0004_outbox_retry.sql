-- outbox rows the broker refused or no queue took are tried again later,
-- each time later than the last, instead of at the head of every round
-- (where they would hold back the rows behind them).
ALTER TABLE outbox
  ADD COLUMN IF NOT EXISTS next_attempt_at DATETIME(6) NULL
    COMMENT 'a row that failed to publish waits until then' AFTER publish_attempts;
