-- coupon_queue: the Magento 1 event queue table from ../shared/seeds/001_*
-- (the coupon_queue design), kept exactly as the seed gives it so a shop's
-- existing table and this one are the same. Not an orderq migration: a shop
-- already has it. `orderq relay --legacy-table coupon_queue` (see
-- docs/legacy.md) moves its rows with is_executed = 0 to the broker.
-- event_data is PHP serialize() of an array (see include/orderq/phpser.h).
-- The '0000-00-00' default needs a sql_mode without NO_ZERO_DATE (MariaDB's
-- default has none).
CREATE TABLE `coupon_queue` (
  `id` int(10) unsigned NOT NULL AUTO_INCREMENT COMMENT 'Queue Id',
  `event_code` varchar(255) DEFAULT '' COMMENT 'Event Code',
  `event_identifier` varchar(255) DEFAULT '' COMMENT 'Event Identifier',
  `event_data` varchar(255) DEFAULT '' COMMENT 'Event Data',
  `created_at` timestamp NOT NULL DEFAULT '0000-00-00 00:00:00' COMMENT 'Created At',
  `executed_at` timestamp NULL DEFAULT NULL COMMENT 'Execute At',
  `execute_result` varchar(255) DEFAULT '' COMMENT 'Event Execute Result',
  `is_executed` tinyint(1) NOT NULL DEFAULT '0' COMMENT 'Event Execute Status',
  PRIMARY KEY (`id`),
  UNIQUE KEY `UNQ_COUPON_QUEUE_EVENT_IDENTIFIER` (`event_identifier`),
  KEY `IDX_COUPON_QUEUE_EVENT_CODE_IS_EXECUTED` (`event_code`,`is_executed`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8 COMMENT='Event Queue Table';

