"""bucketrun's outbound side: Job watch, completion classification, job records, in-pod staging."""
