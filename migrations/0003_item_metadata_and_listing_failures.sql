-- Items keep everything the dataset listing knew about their sample, and the listing's skipped
-- samples become failed items, so the shipped road (ledger -> worker -> finalizer) loses nothing
-- that a local listing saw.
--
-- metadata: the sample's other fields (a WebDataset .json member, a manifest's extra columns)
-- as a JSON object, written into the output sidecars next to each row.
--
-- Listing failures (e.g. a WebDataset key with no image) are inserted failed, with their reason
-- in `error`, ordinals after the job's real items and shard_index -1: they belong to no shard,
-- so no claim, completion or retry ever touches them, while `vtp failures`, the job's counters
-- and the finalizer's manifest all see them.
ALTER TABLE items ADD COLUMN metadata jsonb
    CHECK (metadata IS NULL OR jsonb_typeof(metadata) = 'object');
ALTER TABLE items ADD CONSTRAINT items_listing_failures_are_failed
    CHECK (shard_index >= 0 OR (shard_index = -1 AND state = 'failed'));
