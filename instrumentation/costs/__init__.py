"""Cost advisor: observed BigQuery jobs → shapes, dollars, partition-filter impact and
materialized-view proposals (the engine behind ``bastion queries`` and
``bastion audit-partitions --impact``)."""
