"""``bucketrun services apply|list|delete``: plan (``plan``, pure), report (``inventory``) and carry out
(``commands``) the buckets, ConfigMaps, Secrets and notification rules the services need."""
