-- Coupon rules (the seed's "send a coupon when an order's qualifying items
-- total more than X") and the coupons they have issued. Money is integer
-- minor units of the rule's currency; never a float.
CREATE TABLE IF NOT EXISTS coupon_rule (
  rule_id          BIGINT UNSIGNED NOT NULL,
  promo_id         BIGINT UNSIGNED NOT NULL,
  name             VARCHAR(191) NOT NULL,
  currency         CHAR(3) CHARACTER SET ascii NOT NULL,
  threshold_minor  BIGINT NOT NULL COMMENT 'qualifying total must be strictly greater',
  discount_type    ENUM('fixed','percent') NOT NULL,
  discount_minor   BIGINT NOT NULL
                   COMMENT 'fixed: minor units of currency; percent: hundredths of a percent',
  valid_days       INT UNSIGNED NOT NULL,
  code_prefix      VARCHAR(32) NOT NULL DEFAULT '',
  created_at       DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at       DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (rule_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin COMMENT='orderq coupon rules';

CREATE TABLE IF NOT EXISTS coupon_rule_sku (
  rule_id          BIGINT UNSIGNED NOT NULL,
  sku              VARCHAR(191) NOT NULL,
  PRIMARY KEY (rule_id, sku),
  KEY idx_coupon_rule_sku_sku (sku),
  CONSTRAINT fk_coupon_rule_sku_rule FOREIGN KEY (rule_id) REFERENCES coupon_rule (rule_id)
    ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin COMMENT='SKUs that count towards a rule';

CREATE TABLE IF NOT EXISTS coupon (
  id               BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  code             VARCHAR(64) CHARACTER SET ascii NOT NULL,
  rule_id          BIGINT UNSIGNED NOT NULL,
  promo_id         BIGINT UNSIGNED NOT NULL,
  order_id         VARCHAR(64) NOT NULL,
  event_identifier VARCHAR(191) NOT NULL COMMENT 'the order event that earned it',
  customer_email   VARCHAR(254) NOT NULL DEFAULT '',
  currency         CHAR(3) CHARACTER SET ascii NOT NULL,
  discount_type    ENUM('fixed','percent') NOT NULL,
  discount_minor   BIGINT NOT NULL,
  expires_at       DATETIME(6) NOT NULL,
  created_at       DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (id),
  UNIQUE KEY uq_coupon_code (code),
  UNIQUE KEY uq_coupon_order_rule (order_id, rule_id),
  KEY idx_coupon_event (event_identifier)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin COMMENT='coupons issued by orderq';
